import { describe, expect, it, vi } from 'vitest';
import { SessionHistory } from '../shared/index.ts';
import { DEFAULT_TOKENS, startFakeUpstream, type FakeUpstream } from './helpers/fake-upstream.ts';
import { startServer } from './helpers/server.ts';
import { streamSseRoute } from './helpers/sse.ts';
import { collectStream, stockClient } from './helpers/trpc-clients.ts';

// How soon after the client leaves the upstream request must be closed. Generous for a loaded CI
// machine; the point is that it is closed at all, long before the reply (which never ends) would.
const BOUND_MS = 1000;

type Way = 'sse-route' | 'trpc-ws' | 'trpc-sse' | 'openai-route';

/** Reads two deltas on the given transport, then leaves; returns when it left (performance.now()). */
async function readTwoThenLeave(url: string, way: Way, sessionId: string): Promise<number> {
  if (way === 'sse-route') {
    let n = 0;
    for await (const _frame of streamSseRoute(url, { message: 'hello', session_id: sessionId })) {
      if (++n === 2) break; // breaking aborts the fetch: the connection goes away
    }
    return performance.now();
  }
  if (way === 'openai-route') {
    const controller = new AbortController();
    const res = await fetch(`${url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-sluice-session': sessionId },
      body: JSON.stringify({ model: 'm', messages: [{ role: 'user', content: 'hello' }], stream: true }),
      signal: controller.signal,
    });
    let text = '';
    const decoder = new TextDecoder();
    for await (const part of res.body as unknown as AsyncIterable<Uint8Array>) {
      text += decoder.decode(part, { stream: true });
      if ((text.match(/"content":"[^"]+"/g) ?? []).length >= 2) break;
    }
    controller.abort();
    return performance.now();
  }
  const { client, close } = stockClient(url, way === 'trpc-ws' ? 'ws' : 'sse');
  let leftAt = 0;
  await collectStream(client, { message: 'hello', sessionId }, (event, unsubscribe) => {
    if (event.type !== 'delta' || event.index !== 2) return;
    if (way === 'trpc-sse')
      unsubscribe(); // closes the EventSource
    else void close(); // drops the WebSocket
    leftAt = performance.now();
  });
  return leftAt;
}

async function hangingUpstream(): Promise<{ upstream: FakeUpstream; url: string }> {
  // Three tokens, then silence forever: only the client's leaving can end this request.
  const upstream = await startFakeUpstream({ kind: 'stall', after: 3 });
  const server = await startServer({
    LLM_PROVIDER: 'openai',
    OPENAI_BASE_URL: upstream.baseURL,
    LLM_MODEL: 'fake-model',
    UPSTREAM_STALL_TIMEOUT_MS: 0,
    RESUME_GRACE_MS: 0,
  });
  return { upstream, url: server.url };
}

describe.each<Way>(['sse-route', 'trpc-ws', 'trpc-sse', 'openai-route'])('client disconnect on %s', (way) => {
  it('closes the upstream HTTP request at once and keeps the partial as interrupted', async () => {
    const { upstream, url } = await hangingUpstream();
    const leftAt = await readTwoThenLeave(url, way, `leave-${way}`);
    const request = upstream.requests[0]!;
    await vi.waitFor(() => expect(request.closedAt).toBeDefined(), { timeout: BOUND_MS * 2 });
    expect(request.abortedByClient).toBe(true);
    expect(request.closedAt! - leftAt).toBeLessThan(BOUND_MS);

    await vi.waitFor(async () => {
      const history = SessionHistory.parse(await (await fetch(`${url}/v1/sessions/leave-${way}/messages`)).json());
      expect(history.messages[1]).toMatchObject({ role: 'assistant', status: 'interrupted' });
      expect(DEFAULT_TOKENS.slice(0, 3).join('').startsWith(history.messages[1]!.content)).toBe(true);
    });
  });
});

describe('cancel', () => {
  it('POST /v1/chat/cancel closes the upstream request of the running reply', async () => {
    const { upstream, url } = await hangingUpstream();
    const { client } = stockClient(url, 'ws');
    const collected = collectStream(client, { message: 'hello', sessionId: 'to-cancel' }, (event) => {
      if (event.type === 'delta' && event.index === 2) {
        void fetch(`${url}/v1/chat/cancel`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"session_id": "to-cancel"}' });
      }
    });
    const { events } = await collected;
    expect(events.at(-1)).toMatchObject({ type: 'error', code: 'cancelled' });
    await vi.waitFor(() => expect(upstream.requests[0]!.closedAt).toBeDefined(), { timeout: BOUND_MS });
    expect(upstream.requests[0]!.abortedByClient).toBe(true);
  });

  it('a stateless OpenAI-route request whose client leaves before the first token closes its upstream request too', async () => {
    const upstream = await startFakeUpstream({ kind: 'silent' });
    const server = await startServer({ LLM_PROVIDER: 'openai', OPENAI_BASE_URL: upstream.baseURL, LLM_MODEL: 'm', UPSTREAM_FIRST_TOKEN_TIMEOUT_MS: 0 });
    const controller = new AbortController();
    const pending = fetch(`${server.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'm', messages: [{ role: 'user', content: 'hello' }], stream: true }),
      signal: controller.signal,
    }).catch(() => undefined);
    await vi.waitFor(() => expect(upstream.requests).toHaveLength(1));
    const leftAt = performance.now();
    controller.abort();
    await pending;
    await vi.waitFor(() => expect(upstream.requests[0]!.closedAt).toBeDefined(), { timeout: BOUND_MS * 2 });
    expect(upstream.requests[0]!.closedAt! - leftAt).toBeLessThan(BOUND_MS);
  });
});
