import { createServer } from 'node:http';
import { WebSocketServer, type WebSocket } from 'ws';
import { listenAndAnnounce } from './listen.ts';
import { delayFromEnv, pacedDeltas, replyId } from './paced.ts';
import { asDeltas } from '../../server/core/providers/provider.ts';

// Baseline: the raw `ws` server of raw-ws.ts, speaking tRPC's WebSocket protocol instead of its own
// frames (`subscription` in, `started`, `data` with superjson's `{"json": ...}` of the tracked event,
// `stopped` out; `subscription.stop` ends a stream), so that the stock `wsLink` reads it. It is
// what tRPC over WebSocket costs with nothing but the writer on the server: the same client as
// Sluice's tRPC WS, without sessions, history or validation. Held streams of Sluice's tRPC WS are
// compared with it, because that client (one `createWSClient` per user, then the tRPC link) costs
// the load generator, which shares the cores, far more than raw-ws's hand-written one.

const delayMs = delayFromEnv();

type Id = number | string;

interface SubscriptionMessage {
  readonly id: Id;
  readonly method: string;
  readonly params?: { readonly input?: { readonly json?: { readonly message?: string } } };
}

async function stream(socket: WebSocket, id: Id, message: string, signal: AbortSignal): Promise<void> {
  const head = `{"id":${JSON.stringify(id)},"result":{"type":"data","id":`;
  const reply = replyId();
  let n = 0;
  for await (const item of pacedDeltas(message, delayMs, signal))
    for (const delta of asDeltas(item)) {
      n++;
      const eventId = `"${reply}:${n}"`;
      socket.send(`${head}${eventId},"data":{"json":{"id":${eventId},"data":{"type":"delta","delta":${JSON.stringify(delta)},"index":${n}}}}}}`);
    }
  const eventId = `"${reply}:${n + 1}"`;
  socket.send(`${head}${eventId},"data":{"json":{"id":${eventId},"data":{"type":"done","totalChunks":${n}}}}}}`);
}

const server = createServer((req, res) => {
  if (req.url === '/health') res.writeHead(200, { 'Content-Type': 'application/json' }).end('{"status":"ok"}');
  else res.writeHead(404).end();
});
const wss = new WebSocketServer({ server, path: '/trpc' });
wss.on('connection', (socket) => {
  const running = new Map<Id, AbortController>();
  socket.on('close', () => {
    for (const controller of running.values()) controller.abort();
  });
  socket.on('error', () => socket.terminate());
  socket.on('message', (data) => {
    const parsed = JSON.parse((data as Buffer).toString()) as SubscriptionMessage | SubscriptionMessage[];
    for (const msg of Array.isArray(parsed) ? parsed : [parsed]) {
      if (msg.method === 'subscription.stop') {
        running.get(msg.id)?.abort();
        continue;
      }
      if (msg.method !== 'subscription') continue;
      const controller = new AbortController();
      running.set(msg.id, controller);
      socket.send(`{"id":${JSON.stringify(msg.id)},"result":{"type":"started"}}`);
      stream(socket, msg.id, msg.params?.input?.json?.message ?? '', controller.signal)
        .then(
          () => socket.send(`{"id":${JSON.stringify(msg.id)},"result":{"type":"stopped"}}`),
          () => undefined, // stopped by the client, or the socket closed
        )
        .finally(() => running.delete(msg.id));
    }
  });
});

await listenAndAnnounce(server, 'raw-trpc-ws', () => {
  for (const client of wss.clients) client.terminate();
});
