import { once } from 'node:events';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { gzipSync } from 'node:zlib';
import { describe, expect, it, vi } from 'vitest';
import { SessionHistory } from '../shared/index.ts';
import { DEFAULT_TOKENS, startFakeUpstream } from './helpers/fake-upstream.ts';
import { startPostgres } from './helpers/postgres.ts';
import { startRedis } from './helpers/redis.ts';
import { startServer } from './helpers/server.ts';
import { parseSse, rawRequest } from './helpers/sse.ts';

// An upstream that is hostile, broken or merely unusual: what the person chatting and the operator
// then get. Each upstream here is a real HTTP server that writes its response by hand.

type Serve = (req: IncomingMessage, res: ServerResponse, gone: AbortSignal) => Promise<void> | void;

const chunk = (delta: Record<string, unknown>, finish: string | null = null, extra: Record<string, unknown> = {}): string =>
  `data: ${JSON.stringify({ id: 'chatcmpl-h', object: 'chat.completion.chunk', created: 1, model: 'm', choices: [{ index: 0, delta, finish_reason: finish }], ...extra })}\n\n`;
/** A whole, well-formed stream of the default tokens. */
const wholeStream = (): string => DEFAULT_TOKENS.map((t) => chunk({ content: t })).join('') + chunk({}, 'stop') + 'data: [DONE]\n\n';
const REPLY = DEFAULT_TOKENS.join('');

async function sluiceBehind(serve: Serve, settings: Record<string, string | number> = {}) {
  const upstream = await startFakeUpstream({ kind: 'custom', serve });
  const server = await startServer({
    LLM_PROVIDER: 'openai',
    OPENAI_BASE_URL: upstream.baseURL,
    LLM_MODEL: 'm',
    UPSTREAM_FIRST_TOKEN_TIMEOUT_MS: 5000,
    UPSTREAM_STALL_TIMEOUT_MS: 5000,
    ...settings,
  });
  return { upstream, server };
}

/** One turn on the SSE route: its frames' data, parsed. */
async function say(url: string, sessionId: string): Promise<Array<Record<string, unknown>>> {
  const res = await rawRequest(`${url}/v1/chat/stream`, {
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ message: 'hello', session_id: sessionId }),
  });
  expect(res.status).toBe(200);
  return parseSse(res.body.toString('utf8')).map((f) => JSON.parse(f.data) as Record<string, unknown>);
}

async function historyText(url: string, sessionId: string): Promise<string> {
  const res = await fetch(`${url}/v1/sessions/${sessionId}/messages`);
  expect(res.status).toBe(200);
  return res.text();
}

const completeTurn = (frames: Array<Record<string, unknown>>) => ({
  text: frames.map((f) => f.delta ?? '').join(''),
  last: frames.at(-1),
});

/** A stream whose last chunk reports this usage. */
const usageStream =
  (promptTokens: number, completionTokens: number): Serve =>
  (_req, res) => {
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    res.end(
      DEFAULT_TOKENS.map((t) => chunk({ content: t })).join('') +
        chunk({}, 'stop') +
        `data: ${JSON.stringify({ choices: [], usage: { prompt_tokens: promptTokens, completion_tokens: completionTokens } })}\n\n` +
        'data: [DONE]\n\n',
    );
  };

describe('usage numbers an upstream makes up', () => {
  it('with STORE=redis, a reply whose reported usage is past 2^53 is still in history (not skipped as corrupt)', async () => {
    const redis = await startRedis();
    if (!redis) return;
    const { server } = await sluiceBehind(usageStream(2 ** 60, 5), { STORE: 'redis', REDIS_URL: redis.url });
    const frames = await say(server.url, 'usage-redis');
    expect(completeTurn(frames)).toEqual({ text: REPLY, last: { delta: '', done: true, total_chunks: DEFAULT_TOKENS.length } });
    // The client was told the reply is done: it must be in history.
    const history = SessionHistory.parse(JSON.parse(await historyText(server.url, 'usage-redis')));
    expect(history.messages.map((m) => [m.role, m.content, m.status])).toEqual([
      ['user', 'hello', 'complete'],
      ['assistant', REPLY, 'complete'],
    ]);
  });

  it('with PostgreSQL, a reply whose reported usage does not fit a 32-bit integer is stored', async () => {
    const pg = await startPostgres();
    if (!pg) return;
    const { server } = await sluiceBehind(usageStream(3_000_000_000, 5), { DATABASE_URL: await pg.createDatabase() });
    const frames = await say(server.url, 'usage-pg');
    expect(completeTurn(frames)).toEqual({ text: REPLY, last: { delta: '', done: true, total_chunks: DEFAULT_TOKENS.length } });
    const history = SessionHistory.parse(JSON.parse(await historyText(server.url, 'usage-pg')));
    expect(history.messages.map((m) => [m.role, m.content, m.status])).toEqual([
      ['user', 'hello', 'complete'],
      ['assistant', REPLY, 'complete'],
    ]);
  }, 60_000);

  it('an absurd count (1e300) reaches neither /metrics nor history, which keeps to the published schema', async () => {
    const { server } = await sluiceBehind(usageStream(1e300, 1e300));
    await say(server.url, 'usage-absurd');
    const parsed = SessionHistory.safeParse(JSON.parse(await historyText(server.url, 'usage-absurd')));
    expect(parsed.success, parsed.success ? '' : parsed.error.message).toBe(true);
    const metrics = await (await fetch(`${server.url}/metrics`)).text();
    const usageLines = metrics.split('\n').filter((l) => l.startsWith('sluice_usage_tokens_total{'));
    for (const line of usageLines) expect(Number(line.split(' ').at(-1)), line).toBeLessThanOrEqual(Number.MAX_SAFE_INTEGER);
  });
});

describe('an informational (1xx) response before the 200', () => {
  it.each([
    ['102 Processing', (res: ServerResponse) => res.writeProcessing()],
    ['103 Early Hints', (res: ServerResponse) => res.writeEarlyHints({ link: '</style.css>; rel=preload; as=style' })],
  ] as const)('%s is skipped, as HTTP clients do: the reply arrives whole', async (_name, inform) => {
    const { server } = await sluiceBehind((_req, res) => {
      inform(res);
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.end(wholeStream());
    });
    const frames = await say(server.url, 'informational');
    expect(completeTurn(frames)).toEqual({ text: REPLY, last: { delta: '', done: true, total_chunks: DEFAULT_TOKENS.length } });
  });
});

describe('an SSE event with empty data', () => {
  it('is not dispatched (the SSE standard; the openai SDK skips it too): the reply arrives whole', async () => {
    const { server } = await sluiceBehind((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      // A keep-alive some proxies send while the model thinks: an event whose data is empty.
      res.end(`data:\n\n${wholeStream()}`);
    });
    const frames = await say(server.url, 'empty-data');
    expect(completeTurn(frames)).toEqual({ text: REPLY, last: { delta: '', done: true, total_chunks: DEFAULT_TOKENS.length } });
  });
});

describe('credentials in OPENAI_BASE_URL (https://user:pass@host/v1)', () => {
  it('are sent (Basic auth), or the setting is refused at start; never silently dropped', async () => {
    const user = 'sluice';
    const password = 'proxy-pass-0123456789';
    const seen: Array<string | undefined> = [];
    const upstream = await startFakeUpstream({
      kind: 'custom',
      serve: (req, res) => {
        seen.push(req.headers.authorization);
        if (req.headers.authorization !== `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`) {
          res.writeHead(401, { 'content-type': 'application/json' }).end('{"error":{"message":"proxy auth required"}}');
          return;
        }
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        res.end(wholeStream());
      },
    });
    let server;
    try {
      server = await startServer({
        LLM_PROVIDER: 'openai',
        OPENAI_BASE_URL: upstream.baseURL.replace('http://', `http://${user}:${password}@`),
        LLM_MODEL: 'm',
      });
    } catch {
      return; // refused at start, naming the setting: as good
    }
    const frames = await say(server.url, 'creds');
    expect({ authorization: seen[0], ...completeTurn(frames) }).toEqual({
      authorization: expect.stringMatching(/^Basic /),
      text: REPLY,
      last: { delta: '', done: true, total_chunks: DEFAULT_TOKENS.length },
    });
  });
});

describe('a compressed stream', () => {
  it('Content-Encoding: gzip (Sluice sends no Accept-Encoding, so any coding is allowed): the reply is read, not "ended unexpectedly"', async () => {
    const { server, upstream } = await sluiceBehind((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream', 'content-encoding': 'gzip' });
      res.end(gzipSync(wholeStream()));
    });
    const frames = await say(server.url, 'gzip');
    const accept = upstream.requests[0]!.headers['accept-encoding'];
    // Either Sluice decodes what it accepted, or it says it accepts only identity.
    if (accept === 'identity') return;
    expect(completeTurn(frames)).toEqual({ text: REPLY, last: { delta: '', done: true, total_chunks: DEFAULT_TOKENS.length } });
  });
});

/** An upstream that ignores max_tokens and streams `total` characters of content, in events of 500,000. */
const runaway =
  (total: number, withUsage: boolean): Serve =>
  async (_req, res, gone) => {
    const piece = 'word '.repeat(100_000);
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    for (let sent = 0; sent < total && !gone.aborted; sent += piece.length) {
      if (!res.write(chunk({ content: piece }))) await new Promise((resolve) => res.once('drain', resolve));
    }
    if (gone.aborted) return;
    res.end(chunk({}, 'stop', withUsage ? { usage: { prompt_tokens: 7, completion_tokens: 100 } } : {}) + 'data: [DONE]\n\n');
  };

describe('an upstream that ignores max_tokens and never stops writing', () => {
  it('cannot grow a reply without bound: past MAX_REPLY_CHARS the upstream is left, and the reply ends there for its length', async () => {
    const { server, upstream } = await sluiceBehind(runaway(50_000_000, true), { MAX_REPLY_CHARS: 100_000 });
    const frames = await say(server.url, 'runaway');
    expect(frames.at(-1)).toMatchObject({ delta: '', done: true });
    expect(frames.map((f) => f.delta ?? '').join('').length).toBe(100_000);
    const history = SessionHistory.parse(JSON.parse(await historyText(server.url, 'runaway')));
    expect(history.messages.map((m) => [m.role, m.status, m.content.length])).toEqual([
      ['user', 'complete', 5],
      ['assistant', 'complete', 100_000],
    ]);
    // Sluice left the upstream at the bound (the upstream would have written 50 MB).
    await vi.waitFor(() => expect(upstream.requests[0]!.abortedByClient).toBe(true));
    // The OpenAI route says why the reply ended.
    const res = await fetch(`${server.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'm', messages: [{ role: 'user', content: 'hi' }] }),
    });
    const body = (await res.json()) as { choices: Array<{ finish_reason: string; message: { content: string } }> };
    expect([res.status, body.choices[0]!.finish_reason, body.choices[0]!.message.content.length]).toEqual([200, 'length', 100_000]);
  }, 60_000);

  it("without the upstream's usage, counting a long reply does not freeze every other stream for seconds", async () => {
    const { server } = await sluiceBehind(runaway(40_000_000, false), { UPSTREAM_INCLUDE_USAGE: 'false' });
    const delay = monitorEventLoopDelay({ resolution: 10 });
    delay.enable();
    await rawRequest(`${server.url}/v1/chat/stream`, {
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ message: 'hello', session_id: 'runaway-estimate' }),
    });
    delay.disable();
    // Everything else this process serves waits as long as its event loop is held.
    expect(delay.max / 1e6).toBeLessThan(500);
  }, 60_000);
});

describe("an upstream's retry hint", () => {
  it('that is absurdly long is passed on as a valid Retry-After (digits), not 1e+297', async () => {
    const { server } = await sluiceBehind((_req, res) => {
      res.writeHead(429, { 'content-type': 'application/json', 'retry-after-ms': '1e300' }).end('{"error":{"message":"slow down"}}');
    });
    const res = await fetch(`${server.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'm', messages: [{ role: 'user', content: 'hi' }], stream: true }),
    });
    await res.text();
    expect(res.status).toBe(503);
    expect(res.headers.get('retry-after')).toMatch(/^\d+$/);
  });
});

describe('an upstream that keeps a reply open without ever finishing it', () => {
  /** One token, then a chunk without content every 100 ms (a keep-alive, a reasoning step, an empty `choices`) until Sluice leaves. */
  const endless: Serve = async (_req, res, gone) => {
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    res.write(chunk({ content: 'Thinking ' }));
    const empty = `data: ${JSON.stringify({ id: 'chatcmpl-h', object: 'chat.completion.chunk', created: 1, model: 'm', choices: [] })}\n\n`;
    // The upstream's own pace, until Sluice leaves (the abort is the event waited on).
    const pace = setInterval(() => res.write(empty), 100);
    if (!gone.aborted) await once(gone, 'abort');
    clearInterval(pace);
  };

  it('cannot hold its reply and its session for ever: past MAX_REPLY_MS the upstream is left and the reply ends upstream_timeout, its partial kept', async () => {
    const { server, upstream } = await sluiceBehind(endless, { MAX_REPLY_MS: 1500 });
    const startedAt = Date.now();
    const frames = await say(server.url, 'endless');
    expect(Date.now() - startedAt).toBeLessThan(4000);
    expect(frames.at(-1)).toEqual({ message: 'The model did not finish its reply within the time allowed', partial: 'Thinking ' });
    await vi.waitFor(() => expect(upstream.requests[0]!.abortedByClient).toBe(true));
    const history = SessionHistory.parse(JSON.parse(await historyText(server.url, 'endless')));
    expect(history.messages.map((m) => [m.role, m.status, m.content])).toEqual([
      ['user', 'complete', 'hello'],
      ['assistant', 'failed', 'Thinking '],
    ]);
  }, 30_000);
});

describe('an upstream that answers with a tool call (a gateway that adds tools of its own)', () => {
  const toolCall: Serve = (_req, res) => {
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    const call = (fn: Record<string, unknown>) => ({ tool_calls: [{ index: 0, id: 'call_1', type: 'function', function: fn }] });
    res.end(
      chunk({ role: 'assistant', content: null, ...call({ name: 'get_weather', arguments: '' }) }) +
        chunk(call({ arguments: '{"city": "Paris"}' })) +
        chunk({}, 'tool_calls') +
        'data: [DONE]\n\n',
    );
  };

  it('is not stored as an empty complete reply: Sluice offers no tools, so the reply fails, saying why', async () => {
    const { server } = await sluiceBehind(toolCall);
    const frames = await say(server.url, 'tool-call');
    expect(frames).toEqual([{ message: 'The model asked to call a tool, which this server does not offer', partial: '' }]);
    const history = SessionHistory.parse(JSON.parse(await historyText(server.url, 'tool-call')));
    expect(history.messages.map((m) => [m.role, m.status, m.content])).toEqual([
      ['user', 'complete', 'hello'],
      ['assistant', 'failed', ''],
    ]);
  });
});
