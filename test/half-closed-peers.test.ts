import { once } from 'node:events';
import { connect, type Socket } from 'node:net';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { startServer, type TestServer } from './helpers/server.ts';

// A client that never closes its side of a connection: after the server's answer and its FIN it
// reads on and says nothing (a stock socket with `allowHalfOpen`, as any hostile or buggy client can
// be). "Time to send headers and body" is bounded, and so are connections: such a peer must not be
// able to keep a place in MAX_CONNECTIONS past the timeouts, whatever it was answered.

const sockets = new Set<Socket>();
afterEach(() => {
  for (const socket of sockets) socket.destroy();
  sockets.clear();
});

interface Peer {
  readonly socket: Socket;
  received(): string;
  /** Resolves when the server has ended its side (FIN). */
  readonly ended: Promise<void>;
}

async function openHalfOpen(port: number): Promise<Peer> {
  const socket = connect({ port, host: '127.0.0.1', allowHalfOpen: true });
  sockets.add(socket);
  let text = '';
  socket.on('data', (chunk: Buffer) => (text += chunk.toString('latin1')));
  socket.on('error', () => undefined);
  const ended = once(socket, 'end').then(() => undefined);
  await once(socket, 'connect');
  return { socket, received: () => text, ended };
}

const connectionsHeld = (server: TestServer): Promise<number> =>
  new Promise((resolve, reject) => server.sluice.http.server.getConnections((error, count) => (error ? reject(error) : resolve(count))));

/** The place is free again: a plain request gets its answer. */
async function healthAnswers(url: string): Promise<void> {
  const res = await fetch(`${url}/health`, { headers: { connection: 'close' } });
  expect(res.status).toBe(200);
  await res.text();
}

describe('peers that keep their side of the connection open after the server has answered and ended its side', () => {
  it('a request answered 408 (too slow) is let go: it holds no place in MAX_CONNECTIONS past the timeouts', async () => {
    const TIMEOUT = 300;
    const server = await startServer({ REQUEST_TIMEOUT_MS: TIMEOUT, KEEP_ALIVE_TIMEOUT_MS: TIMEOUT, MAX_CONNECTIONS: 2 });
    const peers = await Promise.all([openHalfOpen(server.port), openHalfOpen(server.port)]);
    for (const peer of peers) peer.socket.write('GET /health HTTP/1.1\r\nHost: localhost\r\nX-Slow: never-finished');
    for (const peer of peers) {
      await peer.ended;
      expect(peer.received()).toMatch(/^HTTP\/1\.1 408 Request Timeout\r\n/);
    }
    // Ten times the timeouts: a server that bounds the time a client may take holds none of them by then.
    await vi.waitFor(async () => expect(await connectionsHeld(server), 'connections still held for peers answered 408').toBe(0), {
      timeout: 10 * TIMEOUT + 2000,
      interval: 50,
    });
    await healthAnswers(server.url);
  });

  it('a refused upgrade (404 for another path, 403 for a page of another site) is let go, as is a request offering another protocol (served over HTTP/1.1): none holds a place in MAX_CONNECTIONS', async () => {
    const TIMEOUT = 300;
    const server = await startServer({ REQUEST_TIMEOUT_MS: TIMEOUT, KEEP_ALIVE_TIMEOUT_MS: TIMEOUT, MAX_CONNECTIONS: 3 });
    const upgrade = 'Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n';
    const requests = [
      { head: `GET /elsewhere HTTP/1.1\r\nHost: localhost\r\n${upgrade}\r\n`, status: '404 Not Found' },
      { head: `GET /trpc HTTP/1.1\r\nHost: localhost\r\nOrigin: https://evil.example\r\n${upgrade}\r\n`, status: '403 Forbidden' },
      { head: 'GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n', status: '200 OK' },
    ];
    const peers = await Promise.all(requests.map(() => openHalfOpen(server.port)));
    peers.forEach((peer, i) => peer.socket.write(requests[i]!.head));
    for (const [i, peer] of peers.entries()) {
      await peer.ended;
      expect(peer.received().startsWith(`HTTP/1.1 ${requests[i]!.status}\r\n`)).toBe(true);
    }
    await vi.waitFor(async () => expect(await connectionsHeld(server), 'connections still held for refused upgrades').toBe(0), {
      timeout: 10 * TIMEOUT + 2000,
      interval: 50,
    });
    await healthAnswers(server.url);
  });
});
