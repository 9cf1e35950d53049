import { writeFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import OpenAI from 'openai';
import { createTRPCClient, httpSubscriptionLink, TRPCClientError } from '@trpc/client';
import { EventSource } from 'eventsource';
import superjson from 'superjson';
import { afterEach, describe, expect, it } from 'vitest';
import { closeChatClient, createChatClient, streamChat, type ChatClient } from '../client/index.ts';
import type { AppRouter } from '../server/router-type.ts';
import { ErrorBody, SessionHistory, type StreamEvent } from '../shared/index.ts';
import { startServer, type TestServer } from './helpers/server.ts';
import { streamSseRoute, type SseFrame } from './helpers/sse.ts';
import { collectStream } from './helpers/trpc-clients.ts';

const KEY_A = 'alpha-key-0123456789abcdef';
const KEY_B = 'bravo-key-0123456789abcdef';

const clients: ChatClient[] = [];
afterEach(async () => {
  for (const c of clients.splice(0)) await closeChatClient(c);
});
function typed(url: string, transport: 'ws' | 'sse', apiKey?: string): ChatClient {
  const c = createChatClient({ url, transport, ...(apiKey ? { apiKey } : {}) });
  clients.push(c);
  return c;
}

async function keyedServer(settings: Record<string, string | number> = {}): Promise<TestServer> {
  // Keys from a file, as operators configure them: comments and blank lines are ignored.
  const dir = mkdtempSync(join(tmpdir(), 'sluice-keys-'));
  const file = join(dir, 'keys.txt');
  writeFileSync(file, `# production keys\n${KEY_A}\n\n${KEY_B}  # second tenant\n`);
  return startServer({ API_KEYS_FILE: file, ...settings });
}

const auth = (key: string | undefined): Record<string, string> => (key ? { authorization: `Bearer ${key}` } : {});

async function history(url: string, session: string, key: string) {
  return SessionHistory.parse(await (await fetch(`${url}/v1/sessions/${session}/messages`, { headers: auth(key) })).json());
}

async function collect(iterable: AsyncIterable<StreamEvent>): Promise<StreamEvent[]> {
  const out: StreamEvent[] = [];
  for await (const e of iterable) out.push(e);
  return out;
}

describe('API keys', () => {
  it('missing and wrong keys get the same 401 on every route, with no hint; open routes stay open', async () => {
    const { url } = await keyedServer();
    const requests: Array<[string, RequestInit]> = [
      ['/v1/chat/stream', { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"message":"hi"}' }],
      ['/v1/chat/cancel', { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"session_id":"s"}' }],
      ['/v1/sessions/s/messages', { method: 'GET' }],
    ];
    for (const [path, init] of requests) {
      const bodies: string[] = [];
      for (const key of [undefined, 'wrong-key-0123456789abcdef', KEY_A.slice(0, -1)]) {
        const res = await fetch(`${url}${path}`, { ...init, headers: { ...(init.headers as Record<string, string>), ...auth(key) } });
        expect(res.status).toBe(401);
        expect(res.headers.get('www-authenticate')).toBe('Bearer');
        bodies.push(await res.text());
      }
      expect(new Set(bodies).size).toBe(1);
      expect(ErrorBody.parse(JSON.parse(bodies[0]!)).error.code).toBe('unauthorized');
    }
    // tRPC's queries and mutations over HTTP name the scheme too (its handler writes their answers).
    const input = encodeURIComponent(JSON.stringify({ json: { sessionId: 's' } }));
    for (const [path, init] of [
      [`/trpc/chat.history?input=${input}`, { method: 'GET' }],
      ['/trpc/chat.cancel', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ json: { sessionId: 's' } }) }],
    ] as Array<[string, RequestInit]>) {
      for (const key of [undefined, 'wrong-key-0123456789abcdef']) {
        const res = await fetch(`${url}${path}`, { ...init, headers: { ...(init.headers as Record<string, string>), ...auth(key) } });
        await res.body?.cancel();
        expect(res.status, path).toBe(401);
        expect(res.headers.get('www-authenticate'), path).toBe('Bearer');
      }
    }
    // The OpenAI route answers in OpenAI's error shape, and its SDK raises AuthenticationError.
    const openai = new OpenAI({ baseURL: `${url}/v1`, apiKey: 'wrong-key-0123456789abcdef', maxRetries: 0 });
    await expect(openai.models.list()).rejects.toBeInstanceOf(OpenAI.AuthenticationError);
    expect((await fetch(`${url}/health`)).status).toBe(200);
    expect((await fetch(`${url}/ready`)).status).toBe(200);

    for (const transport of ['ws', 'sse'] as const) {
      for (const key of [undefined, 'wrong-key-0123456789abcdef']) {
        const c = typed(url, transport, key);
        const error = await c.chat.history.query({ sessionId: 's' }).catch((e: unknown) => e);
        expect(error).toBeInstanceOf(TRPCClientError);
        expect((error as TRPCClientError<AppRouter>).data?.code).toBe('UNAUTHORIZED');
        const streamError = await collect(streamChat(c, { message: 'hi', sessionId: 's' })).catch((e: unknown) => e);
        expect((streamError as TRPCClientError<AppRouter>).data?.code).toBe('UNAUTHORIZED');
        expect(await c.health.query()).toEqual({ status: 'ok' });
      }
    }
  });

  it("another key's session looks exactly like a missing one, on every route and transport", async () => {
    const { url } = await keyedServer({ SIM_DELAY_MS: 0, RESUME_GRACE_MS: 60_000 });
    // Key A holds session "shared" with one finished turn, and a running reply in "live".
    const first = await collectFrames(streamSseRoute(url, { message: 'secret of A', session_id: 'shared' }, { headers: auth(KEY_A) }));
    const aId = first[0]!.id!;

    // History: B sees nothing, exactly as for a session nobody used.
    const bShared = await history(url, 'shared', KEY_B);
    const bNever = await history(url, 'never-used', KEY_B);
    expect(bShared.messages).toEqual([]);
    expect({ ...bShared, sessionId: 'x' }).toEqual({ ...bNever, sessionId: 'x' });

    // Resume A's reply with B's key: the same 404 as an id that never existed.
    const resume = async (key: string, id: string) => {
      const res = await fetch(`${url}/v1/chat/stream`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'last-event-id': id, ...auth(key) },
        body: JSON.stringify({ message: 'x', session_id: 'shared' }),
      });
      return [res.status, await res.text()] as const;
    };
    const foreign = await resume(KEY_B, aId);
    const missing = await resume(KEY_B, 'AAAAAAAAAAAAAAAA:1');
    expect(foreign[0]).toBe(404);
    expect(foreign).toEqual(missing);
    expect((await resume(KEY_A, aId))[0]).toBe(200);

    // Streaming "into" A's session with B's key makes B's own session; A's is untouched.
    await collectFrames(streamSseRoute(url, { message: 'B writes', session_id: 'shared' }, { headers: auth(KEY_B) }));
    expect((await history(url, 'shared', KEY_B)).messages.map((m) => m.content)).toContain('B writes');
    expect((await history(url, 'shared', KEY_A)).messages.map((m) => m.content)).not.toContain('B writes');

    // Cancel: B cannot stop A's running reply, which completes.
    expect(await bCannotCancelA()).toBe(true);

    // tRPC, both transports, with B's key: empty history, NOT_FOUND on resume, nothing to cancel.
    for (const transport of ['ws', 'sse'] as const) {
      const b = typed(url, transport, KEY_B);
      expect((await b.chat.history.query({ sessionId: 'shared' })).messages.map((m) => m.content)).not.toContain('secret of A');
      const error = await collect(streamChatResume(b, aId)).catch((e: unknown) => e);
      expect((error as TRPCClientError<AppRouter>).data?.code).toBe('NOT_FOUND');
      expect(await b.chat.cancel.mutate({ sessionId: 'shared' })).toEqual({ cancelled: false });
    }

    // The OpenAI route, naming A's session with B's key, keeps B's own history.
    const openaiB = new OpenAI({ baseURL: `${url}/v1`, apiKey: KEY_B, maxRetries: 0, defaultHeaders: { 'x-sluice-session': 'shared' } });
    await openaiB.chat.completions.create({ model: 'sluice-sim', messages: [{ role: 'user', content: 'B via openai' }] });
    expect((await history(url, 'shared', KEY_A)).messages.map((m) => m.content)).not.toContain('B via openai');
    expect((await history(url, 'shared', KEY_B)).messages.map((m) => m.content)).toContain('B via openai');

    async function bCannotCancelA(): Promise<boolean> {
      const frames: SseFrame[] = [];
      const slowUrl = (await keyedServer({ SIM_DELAY_MS: 20, RESUME_GRACE_MS: 60_000 })).url;
      for await (const frame of streamSseRoute(slowUrl, { message: 'A long', session_id: 'live' }, { headers: auth(KEY_A) })) {
        frames.push(frame);
        if (frames.length === 2) {
          const res = await fetch(`${slowUrl}/v1/chat/cancel`, {
            method: 'POST',
            headers: { 'content-type': 'application/json', ...auth(KEY_B) },
            body: JSON.stringify({ session_id: 'live' }),
          });
          expect(await res.json()).toEqual({ cancelled: false });
        }
      }
      return JSON.parse(frames.at(-1)!.data).done === true;
    }
  });
});

describe('tRPC over SSE: the credential in connectionParams', () => {
  // EventSource cannot send headers: httpSubscriptionLink puts `connectionParams` in the URL
  // (`?connectionParams=<JSON>`), which is how a browser authenticates a subscription.
  function sseOnly(url: string, connectionParams: Record<string, string>) {
    return createTRPCClient<AppRouter>({
      links: [httpSubscriptionLink({ url: `${url}/trpc`, transformer: superjson, EventSource, connectionParams })],
    });
  }
  const subscribe = async (client: ReturnType<typeof sseOnly>, sessionId: string) =>
    (await collectStream(client, { message: 'via connectionParams', sessionId })).events;

  it("streams for the key in connectionParams (no header), into that key's sessions; a wrong key is UNAUTHORIZED", async () => {
    const { url } = await keyedServer();
    const events = await subscribe(sseOnly(url, { apiKey: KEY_A }), 'cp');
    expect(events.at(-1)?.type).toBe('done');
    expect((await history(url, 'cp', KEY_A)).messages.map((m) => m.content)).toContain('via connectionParams');
    expect((await history(url, 'cp', KEY_B)).messages).toEqual([]);

    const refused = await subscribe(sseOnly(url, { apiKey: 'wrong-key-0123456789abcdef' }), 'cp').catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(TRPCClientError);
    expect((refused as TRPCClientError<AppRouter>).data?.code).toBe('UNAUTHORIZED');

    // Malformed params are the client's mistake, answered on the stream as tRPC's producer does.
    const input = encodeURIComponent(JSON.stringify({ json: { message: 'x' } }));
    const res = await fetch(`${url}/trpc/chat.stream?input=${input}&connectionParams=%7Bnot-json`);
    const body = await res.text();
    expect(body).toContain('event: serialized-error');
    expect(body).toContain('"code":"PARSE_ERROR"');
    // The message names what is wrong (the params, not the input), the same on the stream and on a query.
    const params = 'connectionParams: must be a JSON object whose values are strings';
    expect(body).toContain(params);
    for (const bad of ['%7Bnot-json', encodeURIComponent('{"apiKey":123}')]) {
      const stream = await (await fetch(`${url}/trpc/chat.stream?input=${input}&connectionParams=${bad}`)).text();
      expect(stream).toContain(params);
      const query = await fetch(`${url}/trpc/chat.history?input=${encodeURIComponent('{"json":{"sessionId":"cp"}}')}&connectionParams=${bad}`);
      expect(query.status).toBe(400);
      expect(JSON.stringify(await query.json())).toContain(params);
    }
  });

  it('checks the credential before it decodes the input, as every other route does', async () => {
    const { url } = await keyedServer();
    const body = await (await fetch(`${url}/trpc/chat.stream?input=%7Bnot-superjson`)).text();
    expect(body).toContain('event: serialized-error');
    expect(body).toContain('"code":"UNAUTHORIZED"');
  });
});

function streamChatResume(client: ChatClient, lastEventId: string): AsyncIterable<StreamEvent> {
  return {
    [Symbol.asyncIterator]() {
      const events: StreamEvent[] = [];
      let error: unknown;
      let done = false;
      let wake: (() => void) | undefined;
      const sub = client.chat.stream.subscribe(
        { message: 'x', sessionId: 'shared', lastEventId },
        {
          onData: ({ data }) => {
            events.push(data);
            wake?.();
          },
          onError: (e) => {
            error = e;
            done = true;
            wake?.();
          },
          onComplete: () => {
            done = true;
            wake?.();
          },
        },
      );
      return {
        async next(): Promise<IteratorResult<StreamEvent>> {
          for (;;) {
            if (events.length) return { done: false, value: events.shift()! };
            if (error) throw error;
            if (done) return { done: true, value: undefined };
            await new Promise<void>((r) => (wake = r));
          }
        },
        async return() {
          sub.unsubscribe();
          return { done: true, value: undefined };
        },
      };
    },
  };
}

async function collectFrames(iterable: AsyncIterable<SseFrame>): Promise<SseFrame[]> {
  const frames: SseFrame[] = [];
  for await (const f of iterable) frames.push(f);
  return frames;
}
