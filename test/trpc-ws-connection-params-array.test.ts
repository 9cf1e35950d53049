import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { applyWSSHandler } from '@trpc/server/adapters/ws';
import { afterEach, describe, expect, it } from 'vitest';
import WebSocket, { WebSocketServer } from 'ws';
import { createAppRouter } from '../server/transport/trpc/router.ts';
import { startServer } from './helpers/server.ts';

// With `?connectionParams=1` the first message must be a TRPCConnectionParamsMessage, an object.
// tRPC's adapter (adapters/ws.ts, createCtxPromise's getter: `if (!isObject(msg)) throw new
// Error('Message was not an object')`, and isObject excludes arrays) refuses an array (a batch
// sent before the params, say) as a "Malformed TRPCConnectionParamsMessage". Sluice's check
// (`message === null || typeof message !== 'object'`, ws-handler.ts) lets an array through, and
// it is refused one step later, as params of the wrong shape: another message for the same frame.

const sockets: WebSocket[] = [];
const servers: WebSocketServer[] = [];
afterEach(async () => {
  for (const ws of sockets.splice(0)) ws.terminate();
  for (const wss of servers.splice(0)) await new Promise((resolve) => wss.close(resolve));
});

async function refusal(url: string, frame: string): Promise<unknown> {
  const ws = new WebSocket(url);
  sockets.push(ws);
  ws.on('error', () => undefined);
  await once(ws, 'open');
  const first = once(ws, 'message').then(([data]) => JSON.parse(String(data)) as unknown);
  ws.send(frame);
  return first;
}

describe('tRPC over WebSocket: a first message that is an array where connectionParams are awaited', () => {
  it('is refused as tRPC refuses it: PARSE_ERROR "Malformed TRPCConnectionParamsMessage"', async () => {
    const wss = new WebSocketServer({ port: 0, host: '127.0.0.1' });
    servers.push(wss);
    await once(wss, 'listening');
    applyWSSHandler({ wss, router: createAppRouter({ ssePingMs: 0 }), createContext: () => ({}) as never });
    const server = await startServer({ API_KEYS: 'sk-alice-0123456789abcdef' });
    const frame = JSON.stringify([{ method: 'connectionParams', data: { apiKey: 'sk-alice-0123456789abcdef' } }]);

    const theirs = await refusal(`ws://127.0.0.1:${(wss.address() as AddressInfo).port}?connectionParams=1`, frame);
    expect(theirs).toMatchObject({ id: null, error: { json: { message: 'Malformed TRPCConnectionParamsMessage', data: { code: 'PARSE_ERROR' } } } });
    const ours = await refusal(`${server.url.replace(/^http/, 'ws')}/trpc?connectionParams=1`, frame);
    expect(ours).toEqual(theirs);
  });
});
