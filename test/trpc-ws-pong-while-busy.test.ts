import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { createTRPCClient, createWSClient, wsLink } from '@trpc/client';
import { applyWSSHandler } from '@trpc/server/adapters/ws';
import superjson from 'superjson';
import { afterEach, describe, expect, it } from 'vitest';
import WebSocket, { WebSocketServer } from 'ws';
import type { AppRouter } from '../server/router-type.ts';
import { createAppRouter } from '../server/transport/trpc/router.ts';
import { AUDIENCE, ISSUER, startIdentityProvider } from './helpers/identity-provider.ts';
import { startServer } from './helpers/server.ts';

// tRPC's WebSocket adapter answers `PING` with `PONG` as the message arrives (adapters/ws.ts,
// `client.on('message')`: PING/PONG are handled before anything else, whatever calls are pending),
// and the stock wsLink's keep-alive (keepAlive.enabled; pongTimeoutMs, 1 s by default) closes a
// connection whose PONG is late and opens another. Sluice serves a connection's messages one at a
// time (ws-handler.ts, #serve / #handleMessage) and a PING waits in the inbox behind the calls
// before it: while those wait for the connection's context (an identity provider that is slow to
// answer: up to the JWKS fetch's 5 s), no PONG goes out, and a stock client drops the connection.

const sockets: WebSocket[] = [];
const servers: WebSocketServer[] = [];
afterEach(async () => {
  for (const ws of sockets.splice(0)) ws.terminate();
  for (const wss of servers.splice(0)) {
    for (const client of wss.clients) client.terminate();
    await new Promise((resolve) => wss.close(resolve));
  }
});

type Received = string | { id: unknown };

/** Opens a raw socket, sends `messages` at once, and resolves with the first message that comes back. */
async function firstAnswer(url: string, messages: string[]): Promise<Received> {
  const ws = new WebSocket(url);
  sockets.push(ws);
  ws.on('error', () => undefined);
  await once(ws, 'open');
  const first = new Promise<Received>((resolve) =>
    ws.once('message', (data) => resolve(String(data) === 'PONG' ? 'PONG' : (JSON.parse(String(data)) as { id: unknown }))),
  );
  for (const message of messages) ws.send(message);
  return first;
}

async function hangingIdentityServer() {
  const idp = await startIdentityProvider();
  const token = await idp.token('alice');
  idp.failWith('hang');
  const server = await startServer({ AUTH_JWKS_URL: idp.jwksUrl, AUTH_JWT_ISSUER: ISSUER, AUTH_JWT_AUDIENCE: AUDIENCE });
  return { server, token };
}

const health = JSON.stringify({ id: 1, method: 'query', params: { path: 'health', input: { json: null } } });

describe('tRPC over WebSocket: PING while calls wait', () => {
  it('tRPC answers PONG at once while a call waits for the context; so must Sluice', async () => {
    // The reference: tRPC's own adapter, with a context that is slow to come (as a JWKS that hangs).
    const wss = new WebSocketServer({ port: 0, host: '127.0.0.1' });
    servers.push(wss);
    await once(wss, 'listening');
    let release: () => void = () => undefined;
    const gate = new Promise<void>((resolve) => (release = resolve));
    applyWSSHandler({ wss, router: createAppRouter({ ssePingMs: 0 }), createContext: () => gate.then(() => ({}) as never) });
    const reference = `ws://127.0.0.1:${(wss.address() as AddressInfo).port}?connectionParams=1`;
    const params = (token: string) => JSON.stringify({ method: 'connectionParams', data: { token } });
    expect(await firstAnswer(reference, [params('t'), health, 'PING'])).toBe('PONG');
    release();

    const { server, token } = await hangingIdentityServer();
    const ours = `${server.url.replace(/^http/, 'ws')}/trpc?connectionParams=1`;
    const started = performance.now();
    const answer = await firstAnswer(ours, [params(token), health, 'PING']);
    expect(answer, `Sluice's first answer, after ${Math.round(performance.now() - started)} ms`).toBe('PONG');
  });

  it('the stock wsLink with keepAlive does not give up on its connection while a call waits for a slow identity provider', async () => {
    const { server, token } = await hangingIdentityServer();
    // The client's own decision to drop the connection: its keep-alive calls close() on a late PONG.
    let dropped: () => void = () => undefined;
    const gaveUp = new Promise<'client closed the connection'>((resolve) => (dropped = () => resolve('client closed the connection')));
    class WatchedWebSocket extends WebSocket {
      override close(code?: number, reason?: string | Buffer): void {
        dropped();
        super.close(code, reason);
      }
    }
    const wsClient = createWSClient({
      url: `${server.url.replace(/^http/, 'ws')}/trpc`,
      WebSocket: WatchedWebSocket as never,
      connectionParams: () => ({ token }),
      keepAlive: { enabled: true, intervalMs: 500, pongTimeoutMs: 1000 },
    });
    try {
      const client = createTRPCClient<AppRouter>({ links: [wsLink({ client: wsClient, transformer: superjson })] });
      // The identity provider never answers: the call ends with the JWKS fetch's timeout, an error.
      const settled = client.health.query().then(
        () => 'call answered' as const,
        () => 'call answered' as const,
      );
      expect(await Promise.race([settled, gaveUp])).toBe('call answered');
    } finally {
      await wsClient.close();
    }
  });
});
