import { once } from 'node:events';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { listenAndAnnounce } from './listen.ts';
import { delayFromEnv, pacedDeltas, replyId } from './paced.ts';
import { asDeltas } from '../../server/core/providers/provider.ts';

// Baseline: the raw node:http SSE writer of raw-sse.ts, speaking tRPC's SSE wire protocol instead
// of the documented format (`connected`, `data` with superjson's `{"json": ...}` and an `id:` line,
// `return`), so that the stock httpSubscriptionLink reads it. It is what tRPC over SSE costs with
// nothing but the writer on the server: the same client as Sluice's tRPC SSE, without sessions,
// history or validation. Time to first event of Sluice's tRPC SSE is compared with it, because
// that client (EventSource over fetch, then the tRPC link) is much slower to open a stream than
// the plain HTTP client reading the other SSE routes.

const HEADERS = {
  'Content-Type': 'text/event-stream',
  'Cache-Control': 'no-cache, no-transform',
  Connection: 'keep-alive',
  'X-Accel-Buffering': 'no',
};

// As Sluice's stream opens with its default SSE_PING_MS (15 s): the client then restarts a
// 35-second inactivity timer on every event, work that belongs to the wire and not to the server.
const CONNECTED = 'event: connected\ndata: {"reconnectAfterInactivityMs":35000}\n\n';

const delayMs = delayFromEnv();

async function stream(req: IncomingMessage, res: ServerResponse): Promise<void> {
  const raw = new URL(req.url ?? '/', 'http://x').searchParams.get('input') ?? '{}';
  const { json } = JSON.parse(raw) as { json: { message: string } };
  const abort = new AbortController();
  res.once('close', () => abort.abort());
  const id = replyId();
  res.writeHead(200, HEADERS);
  res.write(CONNECTED);
  let n = 0;
  try {
    for await (const item of pacedDeltas(json.message, delayMs, abort.signal))
      for (const delta of asDeltas(item)) {
        n++;
        const frame = `data: {"json":{"type":"delta","delta":${JSON.stringify(delta)},"index":${n}}}\nid: ${id}:${n}\n\n`;
        if (!res.write(frame)) await once(res, 'drain', { signal: abort.signal });
      }
    res.end(`data: {"json":{"type":"done","totalChunks":${n}}}\nid: ${id}:${n + 1}\n\nevent: return\ndata: \n\n`);
  } catch {
    res.destroy();
  }
}

const server = createServer((req, res) => {
  if (req.method === 'GET' && req.url?.startsWith('/trpc/chat.stream?')) {
    stream(req, res).catch(() => res.destroy());
  } else if (req.url === '/health') {
    res.writeHead(200, { 'Content-Type': 'application/json' }).end('{"status":"ok"}');
  } else {
    res.writeHead(404).end();
  }
});

await listenAndAnnounce(server, 'raw-trpc-sse');
