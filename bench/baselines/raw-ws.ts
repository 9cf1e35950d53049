import { createServer } from 'node:http';
import { WebSocketServer, type WebSocket } from 'ws';
import { listenAndAnnounce } from './listen.ts';
import { delayFromEnv, pacedDeltas, replyId } from './paced.ts';
import { asDeltas } from '../../server/core/providers/provider.ts';

// Baseline: a raw `ws` server with hand-written JSON frames. A client sends `{"message": "..."}` on
// its socket and gets `{"id":"<reply>:<seq>","type":"delta","delta":"...","index":n}` frames, then
// `{"id":...,"type":"done","totalChunks":n}`. One reply at a time per socket; the socket stays open.

const delayMs = delayFromEnv();

async function stream(socket: WebSocket, message: string, signal: AbortSignal): Promise<void> {
  const id = replyId();
  let n = 0;
  for await (const item of pacedDeltas(message, delayMs, signal))
    for (const delta of asDeltas(item)) {
      n++;
      socket.send(`{"id":"${id}:${n}","type":"delta","delta":${JSON.stringify(delta)},"index":${n}}`);
    }
  socket.send(`{"id":"${id}:${n + 1}","type":"done","totalChunks":${n}}`);
}

const server = createServer((req, res) => {
  if (req.url === '/health') res.writeHead(200, { 'Content-Type': 'application/json' }).end('{"status":"ok"}');
  else res.writeHead(404).end();
});
const wss = new WebSocketServer({ server, path: '/ws' });
wss.on('connection', (socket) => {
  const abort = new AbortController();
  socket.on('close', () => abort.abort());
  socket.on('error', () => socket.terminate());
  socket.on('message', (data) => {
    const { message } = JSON.parse((data as Buffer).toString()) as { message: string };
    stream(socket, message, abort.signal).catch(() => socket.terminate());
  });
});

await listenAndAnnounce(server, 'raw-ws', () => {
  for (const client of wss.clients) client.terminate();
});
