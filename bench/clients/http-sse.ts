import { Agent, request } from 'node:http';
import { SseParser, type SseEvent } from '../sse-parser.ts';
import { StreamCheck, type StreamOutcome } from '../stream-check.ts';
import type { LoadClient, StreamRequest, User } from './types.ts';

// Raw node:http clients for the SSE routes: the documented `POST /v1/chat/stream` (Sluice's and the
// raw baseline's) and the OpenAI-compatible `POST /v1/chat/completions` with `stream: true`.
// Connections come from one keep-alive agent without a socket limit, so a user's next request
// reuses an idle connection, as a browser or an HTTP client library would.

interface Wire {
  readonly path: string;
  body(request: StreamRequest): string;
  /** Handles one SSE event; returns the outcome when the stream is over. */
  onEvent(event: SseEvent, check: StreamCheck): StreamOutcome | undefined;
}

function httpSseClient(baseUrl: string, wire: Wire): LoadClient {
  const agent = new Agent({ keepAlive: true, maxSockets: Number.POSITIVE_INFINITY, maxFreeSockets: 100_000 });
  const url = new URL(wire.path, baseUrl);

  const stream = (req: StreamRequest): Promise<StreamOutcome> =>
    new Promise((resolve) => {
      const check = new StreamCheck(req.expected);
      let outcome: StreamOutcome | undefined;
      const body = wire.body(req);
      const finish = (o: StreamOutcome): void => {
        clearTimeout(timer);
        resolve(o);
      };
      const http = request(url, {
        method: 'POST',
        agent,
        headers: { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body), Accept: 'text/event-stream' },
      });
      const timer = setTimeout(() => {
        http.destroy();
        finish(check.fail(`timed out after ${req.timeoutMs} ms`));
      }, req.timeoutMs);
      http.on('error', (error) => finish(check.fail(`request failed: ${error.message}`)));
      http.on('response', (res) => {
        if (res.statusCode !== 200) {
          res.resume();
          finish(check.fail(`status ${res.statusCode}`));
          return;
        }
        const parser = new SseParser((event) => {
          outcome ??= wire.onEvent(event, check);
        });
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => parser.push(chunk));
        // The user is free once the response has ended (its connection goes back to the agent).
        res.on('end', () => finish(outcome ?? check.fail('the response ended before the last event')));
        res.on('error', (error) => finish(check.fail(`response failed: ${error.message}`)));
      });
      http.end(body);
    });

  return {
    user: (): User => ({ stream, close: async () => undefined }),
    close: async () => agent.destroy(),
  };
}

/** The documented route (`event: message`, `data: {"delta": ..., "chunk_index": n}`, done with `total_chunks`). */
export function sseRouteClient(baseUrl: string): LoadClient {
  return httpSseClient(baseUrl, {
    path: '/v1/chat/stream',
    body: (req) => JSON.stringify({ message: req.message, session_id: req.sessionId }),
    onEvent: (event, check) => {
      if (event.event === 'error') return check.fail(`error event: ${event.data}`);
      if (event.event !== 'message') return undefined;
      const data = JSON.parse(event.data) as { delta: string; done: boolean; chunk_index?: number; total_chunks?: number };
      if (data.done) return check.done(data.total_chunks);
      check.delta(data.delta, data.chunk_index);
      return undefined;
    },
  });
}

interface Chunk {
  readonly error?: { readonly message: string };
  readonly choices?: ReadonlyArray<{ readonly delta: { readonly role?: string; readonly content?: string }; readonly finish_reason: string | null }>;
}

/** The OpenAI-compatible route: `data: {chunk}` lines, the role first, a `stop` chunk, then `data: [DONE]`. */
export function openAIClient(baseUrl: string, model: string): LoadClient {
  return httpSseClient(baseUrl, {
    path: '/v1/chat/completions',
    // No X-Sluice-Session: the usual OpenAI use, the client sends the conversation.
    body: (req) => JSON.stringify({ model, messages: [{ role: 'user', content: req.message }], stream: true }),
    onEvent: (event, check) => {
      if (event.data === '[DONE]') return check.done();
      const chunk = JSON.parse(event.data) as Chunk;
      if (chunk.error) return check.fail(`error chunk: ${chunk.error.message}`);
      const choice = chunk.choices?.[0];
      if (!choice) return undefined;
      if (choice.delta.role === undefined && choice.delta.content !== undefined) check.delta(choice.delta.content);
      return undefined;
    },
  });
}
