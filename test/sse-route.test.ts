import { Agent, request } from 'node:http';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { ErrorBody, SessionHistory, SseDoneData, SseDeltaData, SseErrorData } from '../shared/index.ts';
import { rawRequest, parseSse } from './helpers/sse.ts';
import { startServer } from './helpers/server.ts';

// The template as docs/sse-format.md documents it, written out independently of the server.
const TEMPLATE =
  "Based on your query about '{prompt}', here is the analysis: This topic involves multiple key " +
  'components that interact in complex ways. The primary considerations include resource allocation, ' +
  'performance metrics, and systematic evaluation of the underlying mechanisms at play.';
const wordsFor = (prompt: string): string[] =>
  TEMPLATE.replace('{prompt}', prompt)
    .split(/\s+/)
    .map((w) => `${w} `);

const post = (url: string, body: string, headers: Record<string, string> = { 'content-type': 'application/json' }) =>
  rawRequest(`${url}/v1/chat/stream`, { headers, body });

describe('POST /v1/chat/stream', () => {
  it('answers the documented bytes for a known prompt', async () => {
    const { url } = await startServer();
    const res = await post(url, JSON.stringify({ message: 'explain caching', session_id: 'test_001' }));

    expect(res.status).toBe(200);
    expect(res.headers['content-type']).toBe('text/event-stream');
    expect(res.headers['cache-control']).toBe('no-cache');
    expect(res.headers['x-accel-buffering']).toBe('no');
    expect(res.headers['connection']).toBe('keep-alive');

    const body = res.body.toString('utf8');
    const generationId = /id: ([A-Za-z0-9_-]+):1\r\n/.exec(body)?.[1];
    expect(generationId).toBeDefined();
    const words = wordsFor('explain caching');
    expect(words).toHaveLength(39);
    let expected = '';
    words.forEach((word, i) => {
      expected += `event: message\r\ndata: {"delta": "${word}", "done": false, "chunk_index": ${i + 1}}\r\nid: ${generationId}:${i + 1}\r\n\r\n`;
    });
    expected += `event: message\r\ndata: {"delta": "", "done": true, "total_chunks": 39}\r\nid: ${generationId}:40\r\n\r\n`;
    expect(body).toBe(expected);
  });

  it('joins to the simulator text, validates against the shared schemas, and stores both turns', async () => {
    const { url } = await startServer();
    const res = await post(url, JSON.stringify({ message: 'what is SSE?' }));
    const frames = parseSse(res.body.toString('utf8'));
    const deltas = frames.slice(0, -1).map((f) => SseDeltaData.parse(JSON.parse(f.data)));
    const done = SseDoneData.parse(JSON.parse(frames.at(-1)!.data));
    const reply = wordsFor('what is SSE?').join('');
    expect(deltas.map((d) => d.delta).join('')).toBe(reply);
    expect(deltas.map((d) => d.chunk_index)).toEqual(deltas.map((_, i) => i + 1));
    expect(done.total_chunks).toBe(deltas.length);

    const history = SessionHistory.parse(await (await fetch(`${url}/v1/sessions/default/messages`)).json());
    expect(history.messages.map((m) => [m.role, m.content, m.status])).toEqual([
      ['user', 'what is SSE?', 'complete'],
      ['assistant', reply, 'complete'],
    ]);
  });

  it('opens the stream (status and headers) while a slow model has not produced its first token', async () => {
    // 60 s before the first token: the headers can only have come from the server sending them at once.
    const { url } = await startServer({ SIM_DELAY_MS: 60_000 });
    const abort = new AbortController();
    const res = await fetch(`${url}/v1/chat/stream`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ message: 'slow' }),
      signal: abort.signal,
    });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('text/event-stream');
    abort.abort();
    await res.body?.cancel().catch(() => undefined);
  });

  it('escapes strings as Python json.dumps does (non-ASCII, quotes, controls)', async () => {
    const { url } = await startServer();
    const prompt = 'café "q" \\ 🚀\ttab';
    const res = await post(url, JSON.stringify({ message: prompt }));
    const body = res.body.toString('utf8');
    // ensure_ascii: every non-ASCII character is a \uXXXX escape, astral ones as surrogate pairs.
    expect(body).toContain(String.raw`data: {"delta": "'caf\u00e9 ", "done": false, "chunk_index": 6}`);
    expect(body).toContain(String.raw`data: {"delta": "\"q\" ", "done": false, "chunk_index": 7}`);
    expect(body).toContain(String.raw`data: {"delta": "\\ ", "done": false, "chunk_index": 8}`);
    expect(body).toContain(String.raw`data: {"delta": "\ud83d\ude80 ", "done": false, "chunk_index": 9}`);
    expect(/[^\x00-\x7f]/.test(body)).toBe(false);
    const deltas = parseSse(body)
      .slice(0, -1)
      .map((f) => SseDeltaData.parse(JSON.parse(f.data)).delta);
    expect(deltas.join('')).toBe(wordsFor(prompt).join(''));
  });

  describe('bad input gets a 4xx JSON error naming the problem, and the server keeps serving', () => {
    const cases: Array<[string, string, Record<string, string> | undefined, number, string, RegExp]> = [
      ['invalid JSON', '{"message": ', undefined, 400, 'invalid_json', /not valid JSON/],
      ['missing message', '{"session_id": "a"}', undefined, 422, 'invalid_request', /^message: /],
      ['empty message', '{"message": ""}', undefined, 422, 'invalid_request', /message: must be a non-empty string/],
      ['message of the wrong type', '{"message": 42}', undefined, 422, 'invalid_request', /^message: /],
      ['session id of the wrong type', '{"message": "hi", "session_id": 7}', undefined, 422, 'invalid_request', /^session_id: /],
      ['session id with a slash', '{"message": "hi", "session_id": "a/b"}', undefined, 422, 'invalid_request', /^session_id: /],
      ['a body that is not an object', '[1, 2]', undefined, 422, 'invalid_request', /^body: /],
      ['wrong content type', '{"message": "hi"}', { 'content-type': 'text/plain' }, 415, 'unsupported_media_type', /application\/json/],
      ['no content type', '{"message": "hi"}', {}, 415, 'unsupported_media_type', /application\/json/],
    ];
    it.each(cases)('%s', async (_name, body, headers, status, code, message) => {
      const { url } = await startServer();
      const res = await post(url, body, headers);
      expect(res.status).toBe(status);
      expect(res.headers['content-type']).toMatch(/^application\/json/);
      const error = ErrorBody.parse(JSON.parse(res.body.toString('utf8')));
      expect(error.error.code).toBe(code);
      expect(error.error.message).toMatch(message);
      const ok = await post(url, JSON.stringify({ message: 'still there?' }));
      expect(ok.status).toBe(200);
    });

    it('oversized body → 413, message over the limit → 422', async () => {
      const { url } = await startServer({ MAX_BODY_BYTES: 1024, MAX_MESSAGE_CHARS: 100 });
      const big = await post(url, JSON.stringify({ message: 'x'.repeat(5000) }));
      expect(big.status).toBe(413);
      expect(ErrorBody.parse(JSON.parse(big.body.toString())).error.code).toBe('payload_too_large');
      const long = await post(url, JSON.stringify({ message: 'x'.repeat(101) }));
      expect(long.status).toBe(422);
      expect(ErrorBody.parse(JSON.parse(long.body.toString())).error.message).toMatch(/at most 100 characters/);
      expect((await post(url, JSON.stringify({ message: 'fine' }))).status).toBe(200);
    });
  });

  it('reads a body however it arrives, and keeps the connection for the next request', async () => {
    const { url } = await startServer();
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    // `send` writes the body; the reply's text and whether the connection was a reused one come back.
    const ask = (headers: Record<string, string>, send: (req: ReturnType<typeof request>) => Promise<void>) =>
      new Promise<{ text: string; reused: boolean }>((resolve, reject) => {
        const req = request(`${url}/v1/chat/stream`, { method: 'POST', agent, headers: { 'content-type': 'application/json', ...headers } }, (res) => {
          let text = '';
          res.setEncoding('utf8');
          res.on('data', (chunk: string) => (text += chunk));
          res.on('end', () => resolve({ text, reused: req.reusedSocket }));
        });
        req.on('error', reject);
        send(req).catch(reject);
      });
    const body = (n: number) => JSON.stringify({ message: `body ${n}`, session_id: 'bodies' });
    const doneOf = (text: string) => SseDoneData.parse(JSON.parse(parseSse(text).at(-1)!.data));
    try {
      // With its headers, in one write.
      const whole = await ask({ 'content-length': String(Buffer.byteLength(body(1))) }, async (req) => void req.end(body(1)));
      // The headers first, then the body in two pieces, turns of the event loop apart.
      const pieces = await ask({ 'content-length': String(Buffer.byteLength(body(2))) }, async (req) => {
        req.flushHeaders();
        await nextTurn();
        req.write(body(2).slice(0, 5));
        await nextTurn();
        req.end(body(2).slice(5));
      });
      // Chunked, with no length.
      const chunked = await ask({}, async (req) => {
        req.write(body(3).slice(0, 7));
        req.end(body(3).slice(7));
      });
      for (const reply of [whole, pieces, chunked]) expect(doneOf(reply.text).total_chunks).toBe(39);
      expect([whole.reused, pieces.reused, chunked.reused]).toEqual([false, true, true]);
      const history = SessionHistory.parse(await (await fetch(`${url}/v1/sessions/bodies/messages`)).json());
      expect(history.messages.filter((m) => m.role === 'user').map((m) => m.content)).toEqual(['body 1', 'body 2', 'body 3']);
    } finally {
      agent.destroy();
    }
  });

  it('unknown routes and wrong methods are JSON 404s; /health answers', async () => {
    const { url } = await startServer();
    const missing = await fetch(`${url}/nope`);
    expect(missing.status).toBe(404);
    expect(ErrorBody.parse(await missing.json()).error.code).toBe('not_found');
    expect((await fetch(`${url}/v1/chat/stream`)).status).toBe(404);
    const health = await fetch(`${url}/health`);
    expect(health.status).toBe(200);
    expect(await health.json()).toEqual({ status: 'ok' });
  });

  it('the error event carries a safe message and the partial reply', async () => {
    const { url } = await startServer(
      {},
      {
        provider: {
          name: 'failing',
          async *stream() {
            yield 'Based ';
            yield 'on ';
            throw new Error('secret upstream detail: key sk-123');
          },
        },
      },
    );
    const res = await post(url, JSON.stringify({ message: 'x', session_id: 'f' }));
    const frames = parseSse(res.body.toString('utf8'));
    const last = frames.at(-1)!;
    expect(last.event).toBe('error');
    const data = SseErrorData.parse(JSON.parse(last.data));
    expect(data.partial).toBe('Based on ');
    expect(data.message).not.toMatch(/secret|sk-123/);
    expect(res.body.toString()).toContain('event: error\r\ndata: {"message": "Internal error", "partial": "Based on "}\r\n');
    const history = SessionHistory.parse(await (await fetch(`${url}/v1/sessions/f/messages`)).json());
    expect(history.messages[1]).toMatchObject({ role: 'assistant', content: 'Based on ', status: 'failed' });
  });
});
