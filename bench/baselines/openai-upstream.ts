import { once } from 'node:events';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { listenAndAnnounce } from './listen.ts';
import { delayFromEnv, pacedDeltas, replyId } from './paced.ts';
import { asDeltas } from '../../server/core/providers/provider.ts';

// A fake OpenAI-compatible upstream for the proxy scenario: `POST /v1/chat/completions` with
// `stream: true` answers the simulator's reply to the last user message, at the same pace
// (SIM_DELAY_MS), in OpenAI's wire format with chunks of a real upstream's size (a role chunk, a
// chunk per token, a finish chunk, a usage chunk when `stream_options.include_usage` asks, then
// `data: [DONE]`). Sluice with LLM_PROVIDER=openai streams through it; measured directly by the
// same load client it is the floor: what serving this load costs without a proxy in front.

const MODEL = 'bench-upstream';
const HEADERS = { 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-cache', Connection: 'keep-alive' };
const MAX_BODY = 1 << 20;

const delayMs = delayFromEnv();
const created = Math.floor(Date.now() / 1000);

interface Completion {
  readonly messages?: ReadonlyArray<{ readonly role?: unknown; readonly content?: unknown }>;
  readonly stream?: unknown;
  readonly stream_options?: { readonly include_usage?: unknown } | null;
}

async function readBody(req: IncomingMessage): Promise<string | undefined> {
  let body = '';
  req.setEncoding('utf8');
  for await (const part of req) {
    body += part as string;
    if (body.length > MAX_BODY) return undefined;
  }
  return body;
}

function lastUserText(body: Completion): string | undefined {
  const messages: NonNullable<Completion['messages']> = Array.isArray(body.messages) ? body.messages : [];
  for (let i = messages.length - 1; i >= 0; i--) {
    const { role, content } = messages[i]!;
    if (role === 'user' && typeof content === 'string') return content;
  }
  return undefined;
}

function reject(res: ServerResponse, status: number, message: string): void {
  res.writeHead(status, { 'Content-Type': 'application/json' });
  res.end(JSON.stringify({ error: { message, type: 'invalid_request_error', param: null, code: null } }));
}

async function complete(req: IncomingMessage, res: ServerResponse): Promise<void> {
  const raw = await readBody(req);
  let body: Completion;
  try {
    body = JSON.parse(raw ?? '') as Completion;
  } catch {
    reject(res, 400, 'the body is not JSON');
    return;
  }
  const prompt = lastUserText(body);
  if (prompt === undefined || body.stream !== true) {
    reject(res, 400, 'this fake upstream streams only (stream: true, a user message)');
    return;
  }
  const usage = body.stream_options?.include_usage === true;
  const abort = new AbortController();
  res.once('close', () => abort.abort());
  // The fixed part of every chunk, as OpenAI sends it (id, object, created, model, fingerprint).
  const head = `data: {"id":"chatcmpl-${replyId()}","object":"chat.completion.chunk","created":${created},"model":"${MODEL}","system_fingerprint":"fp_bench","choices":[`;
  res.writeHead(200, HEADERS);
  res.write(`${head}{"index":0,"delta":{"role":"assistant","content":"","refusal":null},"logprobs":null,"finish_reason":null}]}\n\n`);
  let n = 0;
  try {
    for await (const item of pacedDeltas(prompt, delayMs, abort.signal))
      for (const delta of asDeltas(item)) {
        n++;
        const chunk = `${head}{"index":0,"delta":{"content":${JSON.stringify(delta)}},"logprobs":null,"finish_reason":null}]}\n\n`;
        if (!res.write(chunk)) await once(res, 'drain', { signal: abort.signal });
      }
    res.write(`${head}{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}]}\n\n`);
    if (usage) {
      const promptTokens = prompt.split(/\s+/).length;
      res.write(`${head}],"usage":{"prompt_tokens":${promptTokens},"completion_tokens":${n},"total_tokens":${promptTokens + n}}}\n\n`);
    }
    res.end('data: [DONE]\n\n');
  } catch {
    res.destroy();
  }
}

const server = createServer((req, res) => {
  const path = (req.url ?? '/').split('?', 1)[0];
  if (req.method === 'POST' && path === '/v1/chat/completions') {
    complete(req, res).catch(() => res.destroy());
  } else if (req.method === 'GET' && path === '/v1/models') {
    res.writeHead(200, { 'Content-Type': 'application/json' });
    res.end(JSON.stringify({ object: 'list', data: [{ id: MODEL, object: 'model', created, owned_by: 'bench' }] }));
  } else if (path === '/health') {
    res.writeHead(200, { 'Content-Type': 'application/json' }).end('{"status":"ok"}');
  } else {
    res.writeHead(404).end();
  }
});
// As a long-lived upstream keeps its clients' connections: longer than Node's 5 s default, so that
// a proxy's idle pooled connections are not closed under it between runs.
server.keepAliveTimeout = 65_000;

await listenAndAnnounce(server, 'openai-upstream');
