import { once } from 'node:events';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { afterEach } from 'vitest';

/**
 * What the fake upstream does with one request. Every plan that streams sends OpenAI's wire format:
 * a role chunk, one chunk per token, then its ending.
 */
export type UpstreamPlan =
  /** Streams the tokens (`delayMs` apart), a finish chunk, a usage chunk when asked, `[DONE]`. */
  | { kind: 'ok'; tokens?: readonly string[]; delayMs?: number; usage?: { prompt: number; completion: number }; finish?: string }
  /** Streams the tokens, then waits for `finish` before its finish chunk and `[DONE]`. */
  | { kind: 'finish-when'; finish: Promise<void> }
  /** Answers this status with an OpenAI error body (and the headers, such as retry-after). */
  | { kind: 'status'; status: number; headers?: Record<string, string>; message?: string }
  /** Sends headers, then nothing until the client goes away. */
  | { kind: 'silent' }
  /** Streams `after` tokens, then goes quiet until the client goes away. */
  | { kind: 'stall'; after: number }
  /** Streams `after` tokens, then a `data:` line that is not JSON, then ends. */
  | { kind: 'malformed'; after: number }
  /** Streams `after` tokens, then an `{"error": ...}` chunk (as OpenAI does mid-stream), then ends. */
  | { kind: 'error-chunk'; after: number }
  /** Streams `after` tokens, then cuts the connection. */
  | { kind: 'drop'; after: number }
  /** Streams the tokens, a finish chunk and `[DONE]`, then keeps the response open until the client goes away. */
  | { kind: 'done-open' }
  /** One `chat.completion` JSON body (with usage), as an upstream that ignores `stream: true` answers. */
  | { kind: 'json' }
  /** A normal stream, `delayMs` between chunks, each chunk with `finish_reason: "stop"` (as some proxies of Gemini send), labelled `contentType`. */
  | { kind: 'odd-stream'; delayMs: number; finishEvery?: boolean; contentType?: string }
  /** Every token and the finish chunk (with usage when asked), then the connection cut or left silent: no `[DONE]`. */
  | { kind: 'finished-then'; then: 'drop' | 'stall' }
  /** A reasoning model: `reasoning_content` chunks `everyMs` apart for `forMs`, then the tokens as `ok` does (no usage). */
  | { kind: 'reasoning'; everyMs: number; forMs: number }
  /** Anything else: the test writes the response itself (`gone` aborts when the client leaves). */
  | { kind: 'custom'; serve: (req: IncomingMessage, res: ServerResponse, gone: AbortSignal, record: UpstreamRequest) => Promise<void> | void };

export interface UpstreamRequest {
  readonly path: string;
  readonly headers: IncomingMessage['headers'];
  readonly body: Record<string, unknown>;
  readonly plan: UpstreamPlan;
  /** The client's port: requests with the same one came over the same (kept-alive) connection. */
  readonly remotePort: number | undefined;
  /** performance.now() when the request arrived (its body read). */
  readonly receivedAt: number;
  /** performance.now() when the request's connection closed, whoever closed it. */
  closedAt: number | undefined;
  /** True when the response was not finished at close: the client went away first. */
  abortedByClient: boolean;
  /** Resolves when the request's connection has closed. */
  readonly closed: Promise<void>;
}

export interface FakeUpstream {
  /** Base URL to give as OPENAI_BASE_URL (ends in /v1). */
  readonly baseURL: string;
  readonly requests: UpstreamRequest[];
  /** Connections open now (kept-alive idle ones included). */
  readonly connections: number;
  /** Plans for the next requests, in order; once used up, `fallback` applies. */
  plan(...plans: UpstreamPlan[]): void;
  fallback: UpstreamPlan;
  close(): Promise<void>;
}

/** Words a secret-looking upstream detail that must never reach a Sluice client. */
export const UPSTREAM_SECRET = 'sk-upstream-SECRET-detail';
export const DEFAULT_TOKENS: readonly string[] = ['Hello', ' from', ' the', ' upstream', '.'];

const open = new Set<FakeUpstream>();
afterEach(async () => {
  for (const upstream of [...open]) await upstream.close();
});

const HEADER = 'data: ';
const chunk = (content: string | undefined, finish: string | null, role = false): string => {
  const delta = role ? { role: 'assistant', content: '' } : content === undefined ? {} : { content };
  const body = { id: 'chatcmpl-fake', object: 'chat.completion.chunk', created: 1, model: 'fake-model', choices: [{ index: 0, delta, finish_reason: finish }] };
  return `${HEADER}${JSON.stringify(body)}\n\n`;
};

async function readJson(req: IncomingMessage): Promise<Record<string, unknown>> {
  const parts: Buffer[] = [];
  for await (const part of req as AsyncIterable<Buffer>) parts.push(part);
  try {
    return JSON.parse(Buffer.concat(parts).toString('utf8')) as Record<string, unknown>;
  } catch {
    return {};
  }
}

/** Writes tokens `delayMs` apart; false if the client left meanwhile. */
async function writeTokens(res: ServerResponse, tokens: readonly string[], delayMs: number, signal: AbortSignal): Promise<boolean> {
  for (const token of tokens) {
    if (delayMs > 0) await new Promise((resolve) => setTimeout(resolve, delayMs));
    if (signal.aborted) return false;
    res.write(chunk(token, null));
  }
  return !signal.aborted;
}

/** A small OpenAI-compatible upstream that can be told to fail in each way a real one does. */
export async function startFakeUpstream(fallback: UpstreamPlan = { kind: 'ok' }): Promise<FakeUpstream> {
  const queue: UpstreamPlan[] = [];
  const requests: UpstreamRequest[] = [];

  const serve = async (req: IncomingMessage, res: ServerResponse, record: UpstreamRequest, gone: AbortSignal): Promise<void> => {
    const plan = record.plan;
    const streamHead = (): void => {
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
      res.write(chunk(undefined, null, true));
    };
    switch (plan.kind) {
      case 'ok': {
        streamHead();
        if (!(await writeTokens(res, plan.tokens ?? DEFAULT_TOKENS, plan.delayMs ?? 0, gone))) return;
        res.write(chunk(undefined, plan.finish ?? 'stop'));
        const wantsUsage = (record.body.stream_options as { include_usage?: boolean } | undefined)?.include_usage === true;
        if (wantsUsage && plan.usage) {
          const usage = { prompt_tokens: plan.usage.prompt, completion_tokens: plan.usage.completion, total_tokens: plan.usage.prompt + plan.usage.completion };
          res.write(
            `${HEADER}${JSON.stringify({ id: 'chatcmpl-fake', object: 'chat.completion.chunk', created: 1, model: 'fake-model', choices: [], usage })}\n\n`,
          );
        }
        res.end(`${HEADER}[DONE]\n\n`);
        return;
      }
      case 'finish-when': {
        streamHead();
        if (!(await writeTokens(res, DEFAULT_TOKENS, 0, gone))) return;
        await plan.finish;
        if (gone.aborted) return;
        res.write(chunk(undefined, 'stop'));
        res.end(`${HEADER}[DONE]\n\n`);
        return;
      }
      case 'status': {
        const body = JSON.stringify({
          error: { message: plan.message ?? `upstream says no (${UPSTREAM_SECRET})`, type: 'fake_error', param: null, code: null },
        });
        res.writeHead(plan.status, { 'content-type': 'application/json', ...plan.headers });
        res.end(body);
        return;
      }
      case 'silent':
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        res.flushHeaders();
        return; // the response stays open until the client closes it
      case 'stall':
        streamHead();
        await writeTokens(res, DEFAULT_TOKENS.slice(0, plan.after), 0, gone);
        return;
      case 'malformed':
        streamHead();
        if (!(await writeTokens(res, DEFAULT_TOKENS.slice(0, plan.after), 0, gone))) return;
        res.end(`${HEADER}{"choices": [ this is not JSON ${UPSTREAM_SECRET}\n\n`);
        return;
      case 'error-chunk':
        streamHead();
        if (!(await writeTokens(res, DEFAULT_TOKENS.slice(0, plan.after), 0, gone))) return;
        res.end(`${HEADER}${JSON.stringify({ error: { message: `overloaded: ${UPSTREAM_SECRET}`, type: 'server_error', param: null, code: null } })}\n\n`);
        return;
      case 'drop':
        streamHead();
        if (!(await writeTokens(res, DEFAULT_TOKENS.slice(0, plan.after), 0, gone))) return;
        // Let the written chunks leave before the socket is cut.
        await new Promise((resolve) => setImmediate(resolve));
        req.socket.destroy();
        return;
      case 'reasoning': {
        streamHead();
        for (const until = Date.now() + plan.forMs; Date.now() < until;) {
          await new Promise((resolve) => setTimeout(resolve, plan.everyMs));
          if (gone.aborted) return;
          const body = {
            id: 'chatcmpl-fake',
            object: 'chat.completion.chunk',
            created: 1,
            model: 'fake-model',
            choices: [{ index: 0, delta: { reasoning_content: 'hmm ' }, finish_reason: null }],
          };
          res.write(`${HEADER}${JSON.stringify(body)}\n\n`);
        }
        if (!(await writeTokens(res, DEFAULT_TOKENS, 0, gone))) return;
        res.write(chunk(undefined, 'stop'));
        res.end(`${HEADER}[DONE]\n\n`);
        return;
      }
      case 'json': {
        const content = DEFAULT_TOKENS.join('');
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(
          JSON.stringify({
            id: 'chatcmpl-fake',
            object: 'chat.completion',
            created: 1,
            model: 'fake-model',
            choices: [{ index: 0, message: { role: 'assistant', content }, finish_reason: 'stop' }],
            usage: { prompt_tokens: 9, completion_tokens: 4, total_tokens: 13 },
          }),
        );
        return;
      }
      case 'odd-stream': {
        res.writeHead(200, { 'content-type': plan.contentType ?? 'text/event-stream', 'cache-control': 'no-cache' });
        for (const token of DEFAULT_TOKENS) {
          if (gone.aborted) return;
          res.write(chunk(token, plan.finishEvery ? 'stop' : null));
          await new Promise((resolve) => setTimeout(resolve, plan.delayMs));
        }
        res.write(chunk(undefined, 'stop'));
        res.end(`${HEADER}[DONE]\n\n`);
        return;
      }
      case 'finished-then': {
        streamHead();
        if (!(await writeTokens(res, DEFAULT_TOKENS, 0, gone))) return;
        res.write(chunk(undefined, 'stop'));
        if ((record.body.stream_options as { include_usage?: boolean } | undefined)?.include_usage === true) {
          const usage = { prompt_tokens: 11, completion_tokens: DEFAULT_TOKENS.length, total_tokens: 11 + DEFAULT_TOKENS.length };
          res.write(
            `${HEADER}${JSON.stringify({ id: 'chatcmpl-fake', object: 'chat.completion.chunk', created: 1, model: 'fake-model', choices: [], usage })}\n\n`,
          );
        }
        if (plan.then === 'stall') return; // the response stays open until the client closes it
        await new Promise((resolve) => setImmediate(resolve));
        req.socket.destroy();
        return;
      }
      case 'custom':
        await plan.serve(req, res, gone, record);
        return;
      case 'done-open':
        streamHead();
        if (!(await writeTokens(res, DEFAULT_TOKENS, 0, gone))) return;
        res.write(chunk(undefined, 'stop'));
        res.write(`${HEADER}[DONE]\n\n`);
        return;
      default: {
        const unexpected: never = plan;
        throw new Error(`unknown plan ${JSON.stringify(unexpected)}`);
      }
    }
  };

  const sockets = new Set<Socket>();
  const upstream: FakeUpstream = {
    baseURL: '',
    requests,
    get connections() {
      return sockets.size;
    },
    fallback,
    plan: (...plans) => void queue.push(...plans),
    close: async () => {
      open.delete(upstream);
      server.closeAllConnections();
      if (server.listening) await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };

  const server = createServer((req, res) => {
    const gone = new AbortController();
    let markClosed!: () => void;
    const closed = new Promise<void>((resolve) => (markClosed = resolve));
    void (async () => {
      const path = (req.url ?? '/').split('?', 1)[0]!;
      const body = await readJson(req);
      if (req.method !== 'POST' || path !== '/v1/chat/completions') {
        res.writeHead(404, { 'content-type': 'application/json' }).end('{"error":{"message":"no such route"}}');
        return;
      }
      const record: UpstreamRequest = {
        path,
        headers: req.headers,
        body,
        plan: queue.shift() ?? upstream.fallback,
        remotePort: req.socket.remotePort,
        receivedAt: performance.now(),
        closedAt: undefined,
        abortedByClient: false,
        closed,
      };
      requests.push(record);
      res.once('close', () => {
        record.closedAt = performance.now();
        record.abortedByClient = !res.writableFinished;
        gone.abort();
        markClosed();
      });
      await serve(req, res, record, gone.signal);
    })().catch((error: unknown) => {
      if (!res.headersSent) res.writeHead(500).end(String(error));
      else res.destroy();
    });
  });
  server.on('connection', (socket: Socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  (upstream as { baseURL: string }).baseURL = `http://127.0.0.1:${port}/v1`;
  open.add(upstream);
  return upstream;
}

/** A base URL on which nothing listens (the port was free a moment ago): connections are refused. */
export async function refusedBaseURL(): Promise<string> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return `http://127.0.0.1:${port}/v1`;
}
