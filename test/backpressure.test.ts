import { once } from 'node:events';
import { connect, type Socket } from 'node:net';
import type { ServerResponse } from 'node:http';
import { setImmediate as nextTurn, setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it, vi } from 'vitest';
import WebSocket from 'ws';
import { loadConfig } from '../server/config.ts';
import type { Provider } from '../server/core/providers/provider.ts';
import { SessionHistory } from '../shared/index.ts';
import { recordingProvider } from './helpers/recording-provider.ts';
import { startServer } from './helpers/server.ts';

const DELTA = 'x'.repeat(4095) + ' ';
/** These replies are megabytes long on purpose: past the default bound on a reply (MAX_REPLY_CHARS). */
const LONG_REPLIES = { MAX_REPLY_CHARS: 100_000_000 };

/** An upstream stand-in: a fast burst of `burst` deltas, then a slow tail of `tail`. */
const flood = (burst: number, tail: number, delta = DELTA): Provider => ({
  name: 'flood',
  async *stream({ signal }) {
    for (let i = 0; i < burst; i++) {
      if (i % 64 === 0) await nextTurn(undefined, { signal });
      yield delta;
    }
    for (let i = 0; i < tail; i++) {
      await sleep(20, undefined, { signal });
      yield delta;
    }
  },
});

/** More than the kernel's socket buffers hold, then a tail that outlasts the test. */
const firehose = flood(4000, 10_000);

describe('backpressure', () => {
  it('a reader that stops reading: bounded buffering, cut after the send timeout, reply aborted after the resume window', async () => {
    const HIGH_WATER = 16 * 1024;
    const recorder = recordingProvider(firehose);
    const server = await startServer(
      { ...LONG_REPLIES, STREAM_HIGH_WATER_BYTES: HIGH_WATER, SEND_TIMEOUT_MS: 800, RESUME_GRACE_MS: 400 },
      { provider: recorder.provider },
    );
    // Watch what the server queues for this reader in user space.
    let maxQueued = 0;
    let response: ServerResponse | undefined;
    server.sluice.http.server.on('request', (_req, res: ServerResponse) => (response = res));
    const sampler = setInterval(() => (maxQueued = Math.max(maxQueued, response?.writableLength ?? 0)), 2);

    const { port } = server;
    const socket = connect(port, '127.0.0.1');
    const body = JSON.stringify({ message: 'flood me', session_id: 'slow' });
    socket.write(`POST /v1/chat/stream HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body}`);
    await new Promise((resolve) => socket.once('data', resolve));
    socket.pause(); // the reader stops reading
    socket.on('error', () => undefined);

    // The server gives up on the reader once its buffers stay full for the send timeout...
    await vi.waitFor(() => expect(server.sluice.service.openListeners).toBe(0), { timeout: 10_000 });
    const cutAt = performance.now();
    // ...and the reply, which nobody follows any more, is aborted after the resume window.
    await vi.waitFor(() => expect(recorder.calls[0]?.settled).toBe(true), { timeout: 10_000 });
    expect(recorder.calls[0]!.aborted).toBe(true);
    expect(performance.now() - cutAt).toBeGreaterThanOrEqual(300);
    clearInterval(sampler);
    socket.destroy();

    // Never more than the high-water mark plus the frame that crossed it.
    expect(maxQueued).toBeGreaterThan(HIGH_WATER); // the reader did fall behind
    expect(maxQueued).toBeLessThanOrEqual(HIGH_WATER + 2 * (DELTA.length + 200));
    const history = SessionHistory.parse(await (await fetch(`${server.url}/v1/sessions/slow/messages`)).json());
    expect(history.messages[1]).toMatchObject({ status: 'interrupted' });
    expect(history.messages[1]!.content.length).toBeGreaterThan(4000 * DELTA.length - 1);
  });
});

describe('backpressure on a shared connection', () => {
  it("a WebSocket's subscriptions wait for its room together: one listener on the socket, no leak warning", async () => {
    const warnings: Error[] = [];
    const onWarning = (warning: Error): void => void warnings.push(warning);
    process.on('warning', onWarning);
    // Each of the connection's streams more than its share of the socket's buffers.
    const burst = flood(400, 10_000);
    try {
      const server = await startServer({ ...LONG_REPLIES, SEND_TIMEOUT_MS: 800, RESUME_GRACE_MS: 0 }, { provider: burst });
      const ws = new WebSocket(`${server.url.replace(/^http/, 'ws')}/trpc`);
      ws.on('error', () => undefined);
      await once(ws, 'open');
      const subscriptions = loadConfig({}).WS_MAX_SUBSCRIPTIONS;
      for (let id = 1; id <= subscriptions; id++) {
        ws.send(
          JSON.stringify({ id, method: 'subscription', params: { path: 'chat.stream', input: { json: { message: 'flood', sessionId: `shared-${id}` } } } }),
        );
      }
      await vi.waitFor(() => expect(server.sluice.service.openListeners).toBe(subscriptions), { timeout: 10_000 });
      (ws as unknown as { _socket: Socket })._socket.pause(); // the reader stops reading
      // Every stream waits for room on the one socket until the send timeout cuts the reader off.
      await vi.waitFor(() => expect(server.sluice.service.openListeners).toBe(0), { timeout: 15_000 });
      ws.terminate();
      expect(warnings.map((w) => w.name)).not.toContain('MaxListenersExceededWarning');
    } finally {
      process.off('warning', onWarning);
    }
  });
});

/** A server (send timeout 800 ms) whose session `long` holds 12 MB of reply: more than the kernel's socket buffers on both ends take (about 4 MB here). */
async function sessionWithLongHistory(sendTimeoutMs = 800): Promise<Awaited<ReturnType<typeof startServer>>> {
  // The reply runs to its end with nobody reading it (its resume window outlasts it): 12 MB read by
  // a client on the server's own event loop could fall behind the short send timeout on a busy
  // machine, and be cut before the history these tests read is whole.
  const server = await startServer({ ...LONG_REPLIES, SEND_TIMEOUT_MS: sendTimeoutMs, RESUME_GRACE_MS: 60_000 }, { provider: flood(3000, 0) });
  await writeLongSessions(server, [undefined]);
  return server;
}

/** Each key's (or, for undefined, the anonymous owner's) session `long`: a turn whose reply runs to its end unread. */
async function writeLongSessions(server: Awaited<ReturnType<typeof startServer>>, keys: ReadonlyArray<string | undefined>): Promise<void> {
  for (const key of keys) {
    const leave = new AbortController();
    const turn = await fetch(`${server.url}/v1/chat/stream`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', ...(key ? { Authorization: `Bearer ${key}` } : {}) },
      body: JSON.stringify({ message: 'a long one', session_id: 'long' }),
      signal: leave.signal,
    });
    expect(turn.status).toBe(200);
    leave.abort();
  }
  await vi.waitFor(() => expect(server.sluice.service.runningCount).toBe(0), { timeout: 20_000 });
}

describe('backpressure on answers', () => {
  // A long history is megabytes of JSON: a reader that takes none of it must not hold it (and its
  // connection) for as long as it likes, any more than a stream's reader may.
  it.each([
    ['the history route', '/v1/sessions/long/messages'],
    ['tRPC over HTTP', `/trpc/chat.history?input=${encodeURIComponent('{"json":{"sessionId":"long"}}')}`],
  ])('a reader that stops reading a JSON answer (%s) is cut after the send timeout', async (_name, path) => {
    const server = await sessionWithLongHistory();

    // The server's end of the reader's connection (a paused client hears of nothing).
    const accepted = once(server.sluice.http.server, 'connection') as Promise<[Socket]>;
    const socket = connect(server.port, '127.0.0.1');
    socket.on('error', () => undefined);
    const [theirs] = await accepted;
    let closed = false;
    theirs.once('close', () => (closed = true));
    socket.write(`GET ${path} HTTP/1.1\r\nHost: localhost\r\n\r\n`);
    const head = (await once(socket, 'data')) as [Buffer];
    expect(head[0].toString('latin1')).toMatch(/^HTTP\/1\.1 200/);
    socket.pause(); // the reader stops reading
    const pausedAt = performance.now();

    await vi.waitFor(() => expect(closed).toBe(true), { timeout: 10_000 });
    expect(performance.now() - pausedAt).toBeGreaterThanOrEqual(700);
    socket.destroy();
  });
});

describe('backpressure on answers over WebSocket', () => {
  // The same send timeout for a WebSocket's answer: its next call would wait for room (and cut it),
  // but a client that sends nothing more, or only keeps its connection alive, must not hold it.
  it('a WebSocket reader that takes nothing of a JSON answer, and only keeps its connection alive, is cut after the send timeout', async () => {
    const server = await sessionWithLongHistory();
    const accepted = once(server.sluice.http.server, 'upgrade') as Promise<[unknown, Socket]>;
    const ws = new WebSocket(`${server.url.replace(/^http/, 'ws')}/trpc`);
    ws.on('error', () => undefined);
    await once(ws, 'open');
    const [, theirs] = await accepted;
    let closed = false;
    theirs.once('close', () => (closed = true));
    (ws as unknown as { _socket: Socket })._socket.pause();
    ws.send(JSON.stringify({ id: 1, method: 'query', params: { path: 'chat.history', input: { json: { sessionId: 'long' } } } }));
    const pausedAt = performance.now();
    // Its keep-alive answers go on (a client's PONG counts as hearing from it).
    const alive = setInterval(() => ws.send('PONG'), 100);
    try {
      await vi.waitFor(() => expect(closed).toBe(true), { timeout: 10_000 });
    } finally {
      clearInterval(alive);
    }
    expect(performance.now() - pausedAt).toBeGreaterThanOrEqual(700);
    ws.terminate();
  });
});

describe('backpressure on answers: a slow reader', () => {
  it('a reader that takes a long answer in bits, each within the send timeout, gets all of it', async () => {
    // A timeout well past the reader's pauses: on a busy machine its timer may come late.
    const server = await sessionWithLongHistory(2000);

    const socket = connect(server.port, '127.0.0.1');
    socket.write(`GET /v1/sessions/long/messages HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n`);
    let received = 0;
    socket.on('data', (chunk: Buffer) => (received += chunk.length));
    // Reads for 5 ms every 500 ms: less than a send timeout without taking anything.
    socket.pause();
    const bits = setInterval(() => {
      socket.resume();
      setTimeout(() => socket.pause(), 5);
    }, 500);
    try {
      await once(socket, 'end');
    } finally {
      clearInterval(bits);
    }
    const history = SessionHistory.parse(await (await fetch(`${server.url}/v1/sessions/long/messages`)).json());
    expect(received).toBeGreaterThan(JSON.stringify(history).length);
    socket.destroy();
  });
});

describe('backpressure on answers: a slow WebSocket reader', () => {
  it('a WebSocket reader that takes a long answer in bits, for longer than the send timeout in all, gets all of it', async () => {
    const server = await sessionWithLongHistory(1500);
    const ws = new WebSocket(`${server.url.replace(/^http/, 'ws')}/trpc`);
    ws.on('error', () => undefined);
    await once(ws, 'open');
    const socket = (ws as unknown as { _socket: Socket })._socket;
    let answer: string | undefined;
    ws.on('message', (data) => (answer = data.toString()));
    socket.pause();
    ws.send(JSON.stringify({ id: 1, method: 'query', params: { path: 'chat.history', input: { json: { sessionId: 'long' } } } }));
    const started = performance.now();
    // Reads for 1 ms every 700 ms: less than a send timeout without taking anything.
    const bits = setInterval(() => {
      socket.resume();
      setTimeout(() => socket.pause(), 1);
    }, 700);
    try {
      await vi.waitFor(() => expect(answer ?? ws.readyState).not.toBe(WebSocket.OPEN), { timeout: 60_000, interval: 50 });
    } finally {
      clearInterval(bits);
    }
    expect(ws.readyState).toBe(WebSocket.OPEN);
    expect(JSON.parse(answer!)).toMatchObject({ id: 1, result: { type: 'data' } });
    // Longer than the send timeout in all: what it took restarted its time.
    expect(performance.now() - started).toBeGreaterThan(1500);
    ws.close();
  });
});

const HOLDER = 'sk-holder-0123456789abcdef';
const OTHER = 'sk-other-0123456789abcdefg';

/** As sessionWithLongHistory, with keys (each has a session `long`, of `delta`s), and answers held capped at `cap` bytes. */
async function keyedLongHistory(
  keys: ReadonlyArray<string | undefined> = [HOLDER, OTHER],
  cap = 4_000_000,
  delta = DELTA,
): Promise<Awaited<ReturnType<typeof startServer>>> {
  const named = keys.filter((key) => key !== undefined);
  const server = await startServer(
    {
      ...LONG_REPLIES,
      ...(named.length > 0 ? { API_KEYS: named.join(',') } : {}),
      SEND_TIMEOUT_MS: 60_000,
      RESUME_GRACE_MS: 60_000,
      MAX_HELD_ANSWER_BYTES: cap,
    },
    { provider: flood(3000, 0, delta) },
  );
  await writeLongSessions(server, keys);
  return server;
}

/** A raw request whose answer's reader takes nothing after its first bytes; resolves with its status line once they came. */
async function stalledRequest(server: Awaited<ReturnType<typeof startServer>>, request: string): Promise<{ status: string; close(): void }> {
  const socket = connect(server.port, '127.0.0.1');
  socket.on('error', () => undefined);
  socket.write(request);
  const [head] = (await once(socket, 'data')) as [Buffer];
  socket.pause();
  return { status: head.toString('latin1').split('\r\n', 1)[0]!, close: () => socket.destroy() };
}

const HISTORY_PATHS = {
  'the history route': '/v1/sessions/long/messages',
  'tRPC over HTTP': `/trpc/chat.history?input=${encodeURIComponent('{"json":{"sessionId":"long"}}')}`,
} as const;

/** A reader that asks for HOLDER's long history over `transport` and takes nothing of the answer; resolves once the answer is out. */
async function stalledReader(server: Awaited<ReturnType<typeof startServer>>, transport: 'http' | 'ws'): Promise<{ close(): void }> {
  if (transport === 'ws') {
    const ws = new WebSocket(`${server.url.replace(/^http/, 'ws')}/trpc?connectionParams=1`);
    ws.on('error', () => undefined);
    await once(ws, 'open');
    ws.send(JSON.stringify({ method: 'connectionParams', data: { apiKey: HOLDER } }));
    // The client's socket stops reading before the answer is asked for: all of it stays queued.
    (ws as unknown as { _socket: Socket })._socket.pause();
    ws.send(JSON.stringify({ id: 1, method: 'query', params: { path: 'chat.history', input: { json: { sessionId: 'long' } } } }));
    return { close: () => ws.terminate() };
  }
  const socket = connect(server.port, '127.0.0.1');
  socket.on('error', () => undefined);
  socket.write(`GET ${HISTORY_PATHS['the history route']} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer ${HOLDER}\r\n\r\n`);
  await once(socket, 'data');
  socket.pause();
  return { close: () => socket.destroy() };
}

describe('backpressure on answers: what readers that take nothing can make the server hold', () => {
  // A reader that takes nothing holds its answer until the send timeout; many of them would each
  // hold a page of history. What answers wait for readers is bounded (MAX_HELD_ANSWER_BYTES, a
  // quarter of it per owner): beyond it a long answer is refused, not held.
  it.each(['http', 'ws'] as const)('answers held for a reader that takes nothing (over %s) are bounded per owner and in all', async (transport) => {
    const server = await keyedLongHistory();
    const reader = await stalledReader(server, transport);
    // Every answer is read whole: a fetch that leaves its body unread is a reader that takes nothing too.
    const ask = async (key: string, path: string) => {
      const res = await fetch(`${server.url}${path}`, { headers: { Authorization: `Bearer ${key}` } });
      const body = await res.text();
      return {
        status: res.status,
        retryAfter: res.headers.get('retry-after'),
        error: res.status === 200 ? undefined : (JSON.parse(body) as { error: unknown }).error,
      };
    };

    // The holder's share is spent: its next long answer is refused, on every route.
    await vi.waitFor(async () => {
      const refused = await ask(HOLDER, HISTORY_PATHS['the history route']);
      expect(refused.status).toBe(429);
      expect(refused.error).toMatchObject({ code: 'rate_limited', message: expect.stringMatching(/MAX_HELD_ANSWER_BYTES/) });
    });
    for (const path of Object.values(HISTORY_PATHS)) expect((await ask(HOLDER, path)).status).toBe(429);
    // And the process's: another owner's long answer is refused for now, and worth retrying.
    const pooled = await ask(OTHER, HISTORY_PATHS['the history route']);
    expect(pooled.status).toBe(503);
    expect(pooled.retryAfter).not.toBeNull();
    expect(pooled.error).toMatchObject({ code: 'unavailable', message: expect.stringMatching(/MAX_HELD_ANSWER_BYTES/) });

    // Once the reader is gone, what it held is free again.
    reader.close();
    await vi.waitFor(async () => expect((await ask(OTHER, HISTORY_PATHS['tRPC over HTTP'])).status).toBe(200), { timeout: 10_000 });
    expect((await ask(HOLDER, HISTORY_PATHS['the history route'])).status).toBe(200);
  });
});

describe('backpressure on answers: what is held is counted in bytes, for every whole answer, fairly', () => {
  const longPage = (key?: string) => `GET /v1/sessions/long/messages HTTP/1.1\r\nHost: localhost\r\n${key ? `Authorization: Bearer ${key}\r\n` : ''}\r\n`;
  const ask = async (server: Awaited<ReturnType<typeof startServer>>, key?: string) => {
    const res = await fetch(`${server.url}/v1/sessions/long/messages`, { headers: key ? { Authorization: `Bearer ${key}` } : {} });
    await res.text();
    return res.status;
  };

  it('without keys every caller is one owner, which has no share of its own: the whole is what bounds it', async () => {
    const server = await keyedLongHistory([undefined], 40_000_000);
    // Two readers that take nothing hold about 25 MB of the 40: a quarter of the whole is no bound here.
    for (let i = 0; i < 2; i++) expect((await stalledRequest(server, longPage())).status).toBe('HTTP/1.1 200 OK');
    expect(await ask(server)).toBe(200);
  });

  it('text of several bytes a character counts its bytes', async () => {
    // 3,000 deltas of 2,047 three-byte characters: 6.1 M characters, 18.4 MB.
    const server = await keyedLongHistory([HOLDER, OTHER], 16_000_000, '字'.repeat(2047) + ' ');
    expect((await stalledRequest(server, longPage(HOLDER))).status).toBe('HTTP/1.1 200 OK');
    expect(await ask(server, OTHER)).toBe(503);
  });

  it('a completion answered whole (stream: false) is held and bounded as a page of history is', async () => {
    const server = await keyedLongHistory([], 1_000_000);
    const body = JSON.stringify({ model: 'm', messages: [{ role: 'user', content: 'a long one' }] });
    const completion = `POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body}`;
    expect((await stalledRequest(server, completion)).status).toBe('HTTP/1.1 200 OK');
    const refused = await stalledRequest(server, completion);
    expect(refused.status).toBe('HTTP/1.1 503 Service Unavailable');
  });
});
