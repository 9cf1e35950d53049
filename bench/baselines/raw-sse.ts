import { once } from 'node:events';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { listenAndAnnounce } from './listen.ts';
import { delayFromEnv, pacedDeltas, replyId } from './paced.ts';
import { asDeltas } from '../../server/core/providers/provider.ts';

// Baseline: a raw node:http SSE writer for `POST /v1/chat/stream`, in the documented format
// (docs/sse-format.md: `\r\n` line ends, Python's JSON layout) with an `id:` line per
// event as Sluice sends. No sessions, no history, no validation beyond JSON.parse: the floor.

const HEADERS = {
  'Content-Type': 'text/event-stream',
  'Cache-Control': 'no-cache',
  Connection: 'keep-alive',
  'X-Accel-Buffering': 'no',
};

const delayMs = delayFromEnv();

async function readBody(req: IncomingMessage): Promise<string> {
  let body = '';
  req.setEncoding('utf8');
  for await (const chunk of req) body += chunk as string;
  return body;
}

async function stream(req: IncomingMessage, res: ServerResponse): Promise<void> {
  const { message } = JSON.parse(await readBody(req)) as { message: string };
  const abort = new AbortController();
  res.once('close', () => abort.abort());
  const id = replyId();
  res.writeHead(200, HEADERS);
  res.flushHeaders();
  let n = 0;
  try {
    for await (const item of pacedDeltas(message, delayMs, abort.signal))
      for (const delta of asDeltas(item)) {
        n++;
        const frame = `event: message\r\ndata: {"delta": ${JSON.stringify(delta)}, "done": false, "chunk_index": ${n}}\r\nid: ${id}:${n}\r\n\r\n`;
        if (!res.write(frame)) await once(res, 'drain', { signal: abort.signal });
      }
    res.end(`event: message\r\ndata: {"delta": "", "done": true, "total_chunks": ${n}}\r\nid: ${id}:${n + 1}\r\n\r\n`);
  } catch {
    res.destroy();
  }
}

const server = createServer((req, res) => {
  if (req.method === 'POST' && req.url === '/v1/chat/stream') {
    stream(req, res).catch(() => res.destroy());
  } else if (req.url === '/health') {
    res.writeHead(200, { 'Content-Type': 'application/json' }).end('{"status":"ok"}');
  } else {
    res.writeHead(404).end();
  }
});

await listenAndAnnounce(server, 'raw-sse');
