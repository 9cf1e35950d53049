import { createServer } from 'node:http';
import { applyWSSHandler } from '@trpc/server/adapters/ws';
import { WebSocketServer } from 'ws';
import { listenAndAnnounce } from './listen.ts';
import { minimalRouter } from './trpc-router.ts';

// Baseline: the minimal tRPC router over WebSocket (`applyWSSHandler`, stock settings) at /trpc.

const server = createServer((req, res) => {
  if (req.url === '/health') res.writeHead(200, { 'Content-Type': 'application/json' }).end('{"status":"ok"}');
  else res.writeHead(404).end();
});
const wss = new WebSocketServer({ server, path: '/trpc' });
applyWSSHandler({ wss, router: minimalRouter });
wss.on('connection', (socket) => socket.on('error', () => socket.terminate()));

await listenAndAnnounce(server, 'trpc-ws-min', () => {
  for (const client of wss.clients) client.terminate();
});
