import { once } from 'node:events';
import { connect, type Socket } from 'node:net';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { Agent, request } from 'node:http';
import { startSluiceProcess } from './helpers/process.ts';
import { startServer } from './helpers/server.ts';

const sockets = new Set<Socket>();
afterEach(() => {
  for (const socket of sockets) socket.destroy();
  sockets.clear();
});

interface Peer {
  readonly socket: Socket;
  /** Everything the server sent so far. */
  received(): string;
  /** When the server closed the connection (performance.now()). */
  readonly closedAt: Promise<number>;
}

async function open(port: number): Promise<Peer> {
  const socket = connect(port, '127.0.0.1');
  sockets.add(socket);
  let text = '';
  socket.on('data', (chunk: Buffer) => (text += chunk.toString('latin1')));
  socket.on('error', () => undefined);
  // Closed however it was closed (a reset too).
  const closedAt = new Promise<number>((resolve) => socket.once('close', () => resolve(performance.now())));
  await once(socket, 'connect');
  return { socket, received: () => text, closedAt };
}

/** A keep-alive GET /health on the peer's connection; resolves when the whole response is in. */
async function health(peer: Peer): Promise<string> {
  const start = peer.received().length;
  peer.socket.write('GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n');
  await vi.waitFor(() => expect(peer.received().slice(start)).toMatch(/\r\n\r\n\{"status":"ok"\}$/), { timeout: 2000, interval: 5 });
  return peer.received().slice(start);
}

/** Writes one byte of `text` every `everyMs` until the connection closes. */
function drip(peer: Peer, text: string, everyMs: number): () => void {
  let i = 0;
  const timer = setInterval(() => {
    if (i < text.length && !peer.socket.destroyed) peer.socket.write(text[i++]!);
  }, everyMs);
  void peer.closedAt.then(() => clearInterval(timer));
  return () => clearInterval(timer);
}

/** Resolves with when the peer was closed, or rejects after `ms`. */
function closedWithin(peer: Peer, ms: number): Promise<number> {
  return Promise.race([peer.closedAt, new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`still open after ${ms} ms`)), ms).unref())]);
}

describe('HTTP connections: request timeout, connection cap, keep-alive', () => {
  it('a request that drips its body or its headers is answered 408 and closed after REQUEST_TIMEOUT_MS', async () => {
    const TIMEOUT = 500;
    const { port } = await startServer({ REQUEST_TIMEOUT_MS: TIMEOUT });
    const body = await open(port);
    const startedAt = performance.now();
    body.socket.write('POST /v1/chat/cancel HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 200\r\n\r\n');
    const stopBody = drip(body, '{"session_id":"' + 'x'.repeat(150), 100);
    const headers = await open(port);
    const stopHeaders = drip(headers, 'GET /health HTTP/1.1\r\nHost: localhost\r\nX-Slow: ' + 'y'.repeat(100), 100);
    try {
      for (const peer of [body, headers]) {
        const closedAt = await closedWithin(peer, TIMEOUT + 3000);
        expect(closedAt - startedAt).toBeGreaterThanOrEqual(TIMEOUT - 50);
        expect(peer.received()).toMatch(/^HTTP\/1\.1 408 Request Timeout\r\n/);
      }
    } finally {
      stopBody();
      stopHeaders();
    }
  });

  it('a body refused before it is read (too large, no such route) is not read on: one answer, then the connection closes', async () => {
    const { port } = await startServer({ MAX_BODY_BYTES: 1024, REQUEST_TIMEOUT_MS: 60_000 });
    const chunk = Buffer.from(`10000\r\n${'a'.repeat(0x10000)}\r\n`);
    for (const path of ['/v1/chat/stream', '/trpc/chat.cancel', '/nowhere']) {
      const peer = await open(port);
      peer.socket.write(`POST ${path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n`);
      // A client that goes on sending its body whatever it is told, as fast as it is taken.
      let sent = 0;
      const pump = (): void => {
        while (!peer.socket.destroyed && sent < 2 ** 31) {
          sent += chunk.length;
          if (!peer.socket.write(chunk)) {
            peer.socket.once('drain', pump);
            return;
          }
        }
      };
      pump();
      await closedWithin(peer, 5000);
      expect(peer.received()).toMatch(/^HTTP\/1\.1 (413|404) /);
      expect(peer.received().match(/HTTP\/1\.1 /g)).toHaveLength(1);
    }
  });

  it('refused requests one after another on one kept-alive socket leave nothing behind on it (no listener per request)', async () => {
    const sluice = await startSluiceProcess({ API_KEYS: 'sk-test-key-0123456789' });
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    const ports = new Set<number>();
    for (let i = 0; i < 40; i++) {
      const status = await new Promise<number>((resolve, reject) => {
        const req = request(
          `${sluice.url}/v1/chat/stream`,
          { method: 'POST', agent, headers: { authorization: 'Bearer wrong', 'content-type': 'application/json' } },
          (res) => {
            res.resume();
            res.once('end', () => resolve(res.statusCode!));
          },
        );
        req.once('socket', (socket) => ports.add(socket.localPort ?? 0));
        req.once('error', reject);
        req.end('{}');
      });
      expect(status).toBe(401);
    }
    agent.destroy();
    // One connection served them all, and Node saw no listener pile up on it.
    expect(ports.size).toBe(1);
    expect(sluice.output()).not.toMatch(/MaxListenersExceededWarning/);
    await sluice.stop();
  });

  it('requests pipelined on one socket are answered in order, at most 16 under way; a socket that sends more is cut', async () => {
    const server = await startServer({ SIM_DELAY_MS: 50 });
    const peer = await open(server.port);
    const body = (i: number) => JSON.stringify({ message: 'hi', session_id: `pipelined-${i}` });
    const request = (i: number) =>
      `POST /v1/chat/stream HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: ${body(i).length}\r\n\r\n${body(i)}`;
    // Three streams: answered one after another, in order, each whole.
    peer.socket.write([0, 1, 2].map(request).join(''));
    await vi.waitFor(() => expect(peer.received().match(/"done": true/g)).toHaveLength(3), { timeout: 20_000 });
    expect(peer.received().match(/HTTP\/1\.1 200 /g)).toHaveLength(3);

    // Two hundred at once, never read: not two hundred replies for nobody.
    const greedy = await open(server.port);
    greedy.socket.write(Array.from({ length: 200 }, (_, i) => request(100 + i)).join(''));
    await closedWithin(greedy, 5000);
    expect(server.sluice.service.runningCount).toBeLessThanOrEqual(16);
  });

  it('a request pipelined behind a long stream, its body sent in two writes, is answered after it: no 408 inside the stream', async () => {
    const server = await startServer({ SIM_DELAY_MS: 100, REQUEST_TIMEOUT_MS: 1000 });
    const peer = await open(server.port);
    const post = (body: string) =>
      `POST /v1/chat/stream HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body}`;
    const second = post(JSON.stringify({ message: 'x'.repeat(30_000), session_id: 'behind' }));
    peer.socket.write(post(JSON.stringify({ message: 'first', session_id: 'ahead' })) + second.slice(0, 20_000));
    await vi.waitFor(() => expect(peer.received()).toContain('"chunk_index": 2'));
    peer.socket.write(second.slice(20_000));
    // The first stream lasts about 4 s, well past REQUEST_TIMEOUT_MS.
    await vi.waitFor(() => expect(peer.received().match(/"done": true/g)).toHaveLength(2), { timeout: 30_000, interval: 50 });
    expect(peer.received().match(/HTTP\/1\.1 \d+/g)).toEqual(['HTTP/1.1 200', 'HTTP/1.1 200']);
  });

  it('a kept-alive connection that served a request gets the same 408 for a slow request, and 400 for a malformed one', async () => {
    const TIMEOUT = 500;
    const { port } = await startServer({ REQUEST_TIMEOUT_MS: TIMEOUT });
    const slow = await open(port);
    const slowServed = (await health(slow)).length;
    const stopSlow = drip(slow, 'GET /health HTTP/1.1\r\nHost: localhost\r\nX-Slow: ' + 'y'.repeat(100), 100);
    const malformed = await open(port);
    const served = (await health(malformed)).length;
    malformed.socket.write('GET /health HTTP/1.1\r\nHost: localhost\r\nBad Header\r\n\r\n');
    try {
      await closedWithin(malformed, 3000);
      expect(malformed.received().slice(served)).toMatch(/^HTTP\/1\.1 400 Bad Request\r\n/);
      await closedWithin(slow, TIMEOUT + 3000);
      expect(slow.received().slice(slowServed)).toMatch(/^HTTP\/1\.1 408 Request Timeout\r\n/);
    } finally {
      stopSlow();
    }
  });

  it('headers too large are answered 431, as Node itself answers them', async () => {
    const { port } = await startServer();
    const peer = await open(port);
    peer.socket.write(`GET /health HTTP/1.1\r\nHost: localhost\r\nX-Big: ${'z'.repeat(20_000)}\r\n\r\n`);
    await closedWithin(peer, 3000);
    expect(peer.received()).toMatch(/^HTTP\/1\.1 431 Request Header Fields Too Large\r\n/);
  });

  it('connections beyond MAX_CONNECTIONS (WebSockets included) are closed at once; a freed place is taken again', async () => {
    const { port, url } = await startServer({ MAX_CONNECTIONS: 4 });
    const held = await Promise.all([open(port), open(port), open(port)]);
    for (const peer of held) await health(peer);
    const ws = await open(port);
    ws.socket.write(
      'GET /trpc HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n',
    );
    await vi.waitFor(() => expect(ws.received()).toMatch(/^HTTP\/1\.1 101 /));

    const refused = await open(port);
    refused.socket.write('GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n');
    await closedWithin(refused, 2000);
    expect(refused.received()).toBe('');

    held[0].socket.destroy();
    await vi.waitFor(async () => {
      const res = await fetch(`${url}/metrics`);
      // The one refused above, and any scrape that came before the server saw the place freed.
      const refusals = /^sluice_rejected_requests_total\{reason="too_many_connections"\} (\d+)$/m.exec(await res.text());
      expect(Number(refusals?.[1])).toBeGreaterThanOrEqual(1);
    });
  });

  it('an idle keep-alive connection is kept for KEEP_ALIVE_TIMEOUT_MS (65 s by default, longer than proxies keep theirs), whatever REQUEST_TIMEOUT_MS', async () => {
    const defaults = await startServer();
    expect(await health(await open(defaults.port))).toMatch(/\r\nKeep-Alive: timeout=65\r\n/i);

    const KEEP_ALIVE = 1200;
    const { port } = await startServer({ KEEP_ALIVE_TIMEOUT_MS: KEEP_ALIVE, REQUEST_TIMEOUT_MS: 300 });
    const peer = await open(port);
    expect(await health(peer)).toMatch(/\r\nKeep-Alive: timeout=1\r\n/i);
    const idleFrom = performance.now();
    const closedAt = await closedWithin(peer, KEEP_ALIVE + 3000);
    expect(closedAt - idleFrom).toBeGreaterThanOrEqual(KEEP_ALIVE - 50);
  });
});
