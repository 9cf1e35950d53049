import { describe, expect, it } from 'vitest';
import { startServer, type TestServer } from './helpers/server.ts';
import { referenceServer } from './helpers/trpc-reference.ts';
import { parseSse, rawRequest, type RawResponse } from './helpers/sse.ts';

// Sluice serves `GET /trpc/chat.stream` with an SSE producer of its own (server/transport/trpc/
// sse-producer.ts). These tests hold it to tRPC's own producer: the same raw requests go to Sluice
// and to tRPC's standalone HTTP handler serving the same router on the same chat service, and the
// answers must match message for message (generation ids aside).

interface Message {
  readonly event: string | undefined;
  readonly data: unknown;
  readonly id: string | undefined;
}

/** The SSE messages of a response, generation ids replaced (they differ from run to run). */
function messages(res: RawResponse): Message[] {
  const normalized = res.body
    .toString()
    .replace(/[0-9a-f]{32}/g, 'GEN')
    .replace(/TAG[ab]/g, 'TAG');
  return parseSse(normalized).map((f) => ({ event: f.event, data: f.data === '' ? '' : (JSON.parse(f.data) as unknown), id: f.id }));
}

const query = (input: unknown): string => `input=${encodeURIComponent(JSON.stringify({ json: input }))}`;

/** Sends the same request to Sluice and to tRPC's handler; returns both answers. */
async function both(
  settings: Record<string, string | number>,
  request: (base: string, tag: string) => Promise<RawResponse>,
): Promise<{ sluice: RawResponse; reference: RawResponse; server: TestServer }> {
  const server = await startServer(settings);
  const reference = await referenceServer(server.sluice);
  return { sluice: await request(server.url, 'a'), reference: await request(reference, 'b'), server };
}

const get = (url: string, headers: Record<string, string> = {}) => rawRequest(url, { method: 'GET', headers });

describe("tRPC SSE protocol: Sluice's producer answers as tRPC's own does", () => {
  it('a subscription: the same headers, then connected, one message per event with its id, return', async () => {
    const { sluice, reference } = await both({ SSE_PING_MS: 0 }, (base, tag) =>
      get(`${base}/trpc/chat.stream?${query({ message: 'explain caching', sessionId: `sse-TAG${tag}` })}`),
    );
    expect(sluice.status).toBe(reference.status);
    for (const name of ['content-type', 'cache-control', 'x-accel-buffering', 'vary', 'connection']) {
      expect(sluice.headers[name], name).toBe(reference.headers[name]);
    }
    expect(messages(sluice)).toEqual(messages(reference));
    const all = messages(sluice);
    expect(all[0]).toEqual({ event: 'connected', data: {}, id: undefined });
    expect(all[1]).toEqual({ event: undefined, data: { json: { type: 'start', replyId: 'GEN' } }, id: 'GEN:0' });
    expect(all[2]).toEqual({ event: undefined, data: { json: { type: 'delta', delta: 'Based ', index: 1 } }, id: 'GEN:1' });
    expect(all.at(-2)).toEqual({
      event: undefined,
      data: { json: { type: 'done', totalChunks: 39, usage: expect.objectContaining({ estimated: true }) } },
      id: 'GEN:40',
    });
    expect(all.at(-1)).toEqual({ event: 'return', data: '', id: undefined });
  });

  it('resuming with the Last-Event-ID header or the lastEventId query gives the same events after it', async () => {
    const server = await startServer({ SSE_PING_MS: 0, RESUME_GRACE_MS: 60_000 });
    const reference = await referenceServer(server.sluice);
    const first = messages(await get(`${server.url}/trpc/chat.stream?${query({ message: 'resume me', sessionId: 'resume' })}`));
    const id = (await get(`${server.url}/trpc/chat.stream?${query({ message: 'resume me', sessionId: 'resume2' })}`)).body
      .toString()
      .match(/id: ([0-9a-f]{32}):1/)![1]!;
    for (const how of ['header', 'query'] as const) {
      const path = `/trpc/chat.stream?${query({ message: 'x', sessionId: 'resume2' })}${how === 'query' ? `&lastEventId=${id}:30` : ''}`;
      const headers: Record<string, string> = how === 'header' ? { 'last-event-id': `${id}:30` } : {};
      const ours = messages(await get(`${server.url}${path}`, headers));
      expect(ours, how).toEqual(messages(await get(`${reference}${path}`, headers)));
      expect(ours.filter((m) => m.id).map((m) => m.id)).toEqual([
        'GEN:31',
        'GEN:32',
        'GEN:33',
        'GEN:34',
        'GEN:35',
        'GEN:36',
        'GEN:37',
        'GEN:38',
        'GEN:39',
        'GEN:40',
      ]);
    }
    expect(first.at(-1)).toEqual({ event: 'return', data: '', id: undefined });
  });

  it('refusals before the stream: the same serialized-error message (bad input, bad resume point, missing key)', async () => {
    const requests: Array<[string, string, Record<string, string>]> = [
      ['wrong type', query({ message: 42 }), {}],
      ['empty message', query({ message: '' }), {}],
      ['bad session id', query({ message: 'hi', sessionId: 'not ok' }), {}],
      ['malformed resume point', query({ message: 'hi' }), { 'last-event-id': 'garbage' }],
      ['unknown resume point', query({ message: 'hi' }), { 'last-event-id': 'AAAAAAAAAAAAAAAA:1' }],
    ];
    const keyed = { API_KEYS: 'sse-protocol-key-0123456789', SSE_PING_MS: 0 };
    const auth = { authorization: 'Bearer sse-protocol-key-0123456789' };
    for (const [name, q, headers] of requests) {
      const { sluice, reference } = await both(keyed, (base) => get(`${base}/trpc/chat.stream?${q}`, { ...auth, ...headers }));
      expect(messages(sluice), name).toEqual(messages(reference));
      expect(
        messages(sluice).map((m) => m.event),
        name,
      ).toEqual(['connected', 'serialized-error']);
    }
    // Input that is not JSON: the same answer, which names the field (the router's error formatter
    // gives it for tRPC's own producer too, whose parser's text it replaces).
    const garbled = await both(keyed, (base) => get(`${base}/trpc/chat.stream?input=%7Bnope`, auth));
    expect(messages(garbled.sluice)).toEqual(messages(garbled.reference));
    const error = (m: Message[]) => (m[1]!.data as { json: { message: string; data: { code: string; sluiceCode: string | null } } }).json;
    expect(error(messages(garbled.sluice))).toMatchObject({
      message: 'input: must be superjson-encoded JSON',
      data: { code: 'BAD_REQUEST', sluiceCode: 'invalid_request' },
    });

    const { sluice, reference } = await both(keyed, (base) => get(`${base}/trpc/chat.stream?${query({ message: 'hi' })}`, { authorization: 'Bearer wrong' }));
    expect(messages(sluice)).toEqual(messages(reference));
    expect(messages(sluice)[1]!.data).toMatchObject({ json: { data: { code: 'UNAUTHORIZED', sluiceCode: 'unauthorized' } } });
  });

  it('a batch (`?batch=1`) is refused before any stream, with the same 400 and body as tRPC answers', async () => {
    // The tRPC wire hunt: Sluice's producer ignored `batch` and answered 200 with a stream (an
    // error event, or the reply itself when the batch's input also had the shape of one input).
    const batch = `batch=1&input=${encodeURIComponent(JSON.stringify({ 0: { json: { message: 'hi' } }, message: 'hi' }))}`;
    const { sluice, reference, server } = await both({ SSE_PING_MS: 0 }, (base) => get(`${base}/trpc/chat.stream?${batch}`));
    expect(reference.status).toBe(400);
    expect([sluice.status, sluice.headers['content-type']]).toEqual([reference.status, reference.headers['content-type']]);
    expect(JSON.parse(sluice.body.toString())).toEqual(JSON.parse(reference.body.toString()));
    expect(server.sluice.service.runningCount).toBe(0);
  });
});
