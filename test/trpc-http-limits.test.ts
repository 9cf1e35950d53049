import { connect } from 'node:net';
import { describe, expect, it } from 'vitest';
import { startSluiceProcess } from './helpers/process.ts';
import { rssOf, watchRss } from './helpers/rss.ts';
import { startServer } from './helpers/server.ts';

const MB = 1024 * 1024;

/**
 * POSTs a body of `size` bytes in 64 KiB writes, as fast as the server takes them, and stops sending
 * once the server answers or closes; resolves with the status line (or '' if it closed first).
 */
function postHuge(baseUrl: string, path: string, size: number): Promise<{ statusLine: string; sent: number }> {
  const { hostname, port } = new URL(baseUrl);
  return new Promise((resolve) => {
    const socket = connect(Number(port), hostname);
    let answer = '';
    let sent = 0;
    let done = false;
    const finish = (): void => {
      if (done) return;
      done = true;
      socket.destroy();
      resolve({ statusLine: answer.split('\r\n', 1)[0]!, sent });
    };
    socket.on('data', (chunk: Buffer) => {
      answer += chunk.toString('latin1');
      if (answer.includes('\r\n\r\n')) finish();
    });
    socket.on('error', finish);
    socket.on('close', finish);
    const chunk = Buffer.alloc(64 * 1024, '"');
    const pump = (): void => {
      while (!done && sent < size) {
        sent += chunk.length;
        if (!socket.write(chunk)) return void socket.once('drain', pump);
      }
    };
    socket.once('connect', () => {
      socket.write(`POST ${path} HTTP/1.1\r\nHost: ${hostname}\r\nContent-Type: application/json\r\nContent-Length: ${size}\r\n\r\n`);
      pump();
    });
  });
}

describe('tRPC over HTTP: the body and batch limits of the other routes', () => {
  it('a 30 MB body is refused with 413 after MAX_BODY_BYTES, as on /v1/chat/cancel, without being read whole', async () => {
    const server = await startSluiceProcess({ STORE: 'memory' });
    const pid = server.child.pid!;
    const before = rssOf(pid);
    const rss = watchRss(pid, 5);
    const trpc = await postHuge(server.url, '/trpc/chat.cancel', 30 * MB);
    const grown = rss.stop() - before;
    expect(grown, `the server's RSS grew by ${Math.round(grown / MB)} MB`).toBeLessThan(16 * MB);
    expect(trpc.statusLine).toBe('HTTP/1.1 413 Payload Too Large');
    const own = await postHuge(server.url, '/v1/chat/cancel', 30 * MB);
    expect(own.statusLine).toBe('HTTP/1.1 413 Payload Too Large');
    await server.stop();
  }, 60_000);

  it('a tRPC batch of more calls than WS_MAX_BATCH is refused with 400, over GET and POST; one at the limit is served', async () => {
    const { url } = await startServer({ WS_MAX_BATCH: 3, WS_MAX_SUBSCRIPTIONS: 3 });
    const paths = (n: number) => Array.from({ length: n }, () => 'health').join(',');
    const inputs = (n: number) => encodeURIComponent(JSON.stringify(Object.fromEntries(Array.from({ length: n }, (_, i) => [i, { json: null }]))));
    const over = await fetch(`${url}/trpc/${paths(4)}?batch=1&input=${inputs(4)}`);
    expect(over.status).toBe(400);
    expect(await over.json()).toMatchObject({ error: { json: { message: 'Batch call exceeds maximum size', data: { code: 'BAD_REQUEST' } } } });
    const posted = await fetch(`${url}/trpc/chat.cancel,chat.cancel,chat.cancel,chat.cancel?batch=1`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(Object.fromEntries(Array.from({ length: 4 }, (_, i) => [i, { json: { sessionId: 's' } }]))),
    });
    expect(posted.status).toBe(400);
    const atLimit = await fetch(`${url}/trpc/${paths(3)}?batch=1&input=${inputs(3)}`);
    expect(atLimit.status).toBe(200);
    expect(await atLimit.json()).toEqual(Array.from({ length: 3 }, () => ({ result: { data: { json: { status: 'ok' } } } })));
  });

  it('input that is not superjson is a 400 naming the input on every procedure, never the text of the exception it raised', async () => {
    const { url } = await startServer();
    const q = (value: unknown) => encodeURIComponent(JSON.stringify(value));
    const bad: Array<[string, string]> = [
      ['not JSON', 'notjson'],
      // A stack overflow inside superjson, from a hundred bytes.
      ['a custom type of unknown name', q({ json: { sessionId: 'x' }, meta: { values: { sessionId: ['custom', 'x'] } } })],
      ['a bigint annotation on a string', q({ json: { sessionId: 'abc' }, meta: { values: { sessionId: ['bigint'] } } })],
    ];
    for (const [what, input] of bad) {
      for (const res of [
        await fetch(`${url}/trpc/chat.history?input=${input}`),
        await fetch(`${url}/trpc/chat.cancel`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: decodeURIComponent(input) }),
      ]) {
        expect(res.status, what).toBe(400);
        expect(await res.json(), what).toMatchObject({
          error: { json: { message: 'input: must be superjson-encoded JSON', data: { code: 'BAD_REQUEST', sluiceCode: 'invalid_request' } } },
        });
      }
    }
  });

  it('a batch of histories is answered up to MAX_BATCH_ANSWER_CHARS; the calls after are refused, one at a time is always answered', async () => {
    const server = await startServer({ STORE: 'memory', MAX_BATCH_ANSWER_CHARS: 2000 });
    for (let turn = 0; turn < 3; turn++) {
      const res = await fetch(`${server.url}/v1/chat/stream`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ message: `turn ${turn} ${'x'.repeat(300)}`, session_id: 'big' }),
      });
      await res.text();
    }
    const one = encodeURIComponent(JSON.stringify({ json: { sessionId: 'big' } }));
    const single = await fetch(`${server.url}/trpc/chat.history?input=${one}`);
    expect(single.status).toBe(200);
    const size = JSON.stringify(await single.json()).length;
    expect(size).toBeGreaterThan(1000);

    const input = encodeURIComponent(JSON.stringify(Object.fromEntries(Array.from({ length: 4 }, (_, i) => [i, { json: { sessionId: 'big' } }]))));
    const batch = (await (await fetch(`${server.url}/trpc/${Array(4).fill('chat.history').join(',')}?batch=1&input=${input}`)).json()) as Array<{
      result?: unknown;
      error?: { json: { message: string; data: { code: string; sluiceCode: string } } };
    }>;
    const answered = batch.filter((call) => call.result !== undefined).length;
    expect(answered).toBeGreaterThanOrEqual(1);
    expect(answered).toBeLessThan(4);
    for (const call of batch.slice(answered)) {
      expect(call.error?.json.data).toMatchObject({ code: 'PAYLOAD_TOO_LARGE', sluiceCode: 'payload_too_large' });
      expect(call.error?.json.message).toContain('MAX_BATCH_ANSWER_CHARS');
    }
  });
});
