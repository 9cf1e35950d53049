import { request } from 'node:http';
import { once } from 'node:events';
import fc from 'fast-check';
import WebSocket from 'ws';
import { describe, expect, it } from 'vitest';
import { startServer } from './helpers/server.ts';
import { collectStream, stockClient } from './helpers/trpc-clients.ts';

const KEY = 'fuzz-key-0123456789abcdef';

interface Answer {
  readonly status: number;
  readonly body: string;
}

/** One raw HTTP request (node:http, so headers and bodies can be anything), read to the end. */
function send(port: number, method: string, path: string, headers: Record<string, string>, body: Buffer | string | undefined): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, method, path, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString() }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body);
  });
}

const ROUTES: ReadonlyArray<readonly [string, string]> = [
  ['POST', '/v1/chat/stream'],
  ['POST', '/v1/chat/cancel'],
  ['POST', '/v1/chat/completions'],
  ['GET', '/v1/models'],
  ['GET', '/v1/sessions/s/messages'],
  ['GET', '/trpc/chat.history'],
  ['GET', '/trpc/chat.stream'],
  ['POST', '/trpc/chat.cancel'],
  ['POST', '/trpc/chat.history,health?batch=1'],
];

// tRPC batches over HTTP, up to and over the batch limit (WS_MAX_BATCH, 16), of known and unknown procedures.
const trpcBatch = fc
  .tuple(
    fc.constantFrom('GET', 'POST'),
    fc.array(fc.constantFrom('health', 'chat.history', 'chat.cancel', 'chat.deleteSession', 'chat.stream', 'nothing'), { minLength: 1, maxLength: 20 }),
    fc.json({ maxDepth: 3 }),
  )
  .map(([method, procedures, input]) => [method, `/trpc/${procedures.join(',')}?batch=1&input=${encodeURIComponent(input)}`] as const);
const route = fc.oneof(fc.constantFrom(...ROUTES), trpcBatch);

// Bodies: random text and bytes, any JSON, and near-misses of the real shapes.
const body = fc.oneof(
  fc.string({ maxLength: 300 }),
  fc.uint8Array({ maxLength: 300 }).map((a) => Buffer.from(a)),
  fc.json({ maxDepth: 4 }),
  fc
    .record({
      message: fc.oneof(fc.string({ maxLength: 40 }), fc.integer(), fc.constant(null), fc.array(fc.string())),
      session_id: fc.oneof(fc.string({ maxLength: 200 }), fc.integer(), fc.constant(undefined)),
      messages: fc.oneof(fc.constant(undefined), fc.array(fc.record({ role: fc.string(), content: fc.oneof(fc.string(), fc.integer()) }), { maxLength: 3 })),
      stream: fc.oneof(fc.boolean(), fc.string(), fc.constant(undefined)),
      model: fc.oneof(fc.string({ maxLength: 20 }), fc.constant(undefined)),
    })
    .map((o) => JSON.stringify(o)),
);
const headerValue = fc.stringMatching(/^[\x20-\x7e]{0,60}$/);
const headers = fc.record(
  {
    'content-type': fc.oneof(fc.constant('application/json'), fc.constant('text/plain'), fc.constant('application/json; charset=latin1'), headerValue),
    authorization: fc.oneof(fc.constant(`Bearer ${KEY}`), headerValue),
    'last-event-id': headerValue,
    'x-sluice-session': headerValue,
  },
  { requiredKeys: [] },
);
const query = fc.oneof(
  fc.constant(''),
  fc.string({ maxLength: 80 }).map((s) => `?input=${encodeURIComponent(s)}`),
  fc.json({ maxDepth: 3 }).map((j) => `?input=${encodeURIComponent(j)}`),
  fc.stringMatching(/^[\x21-\x7e]{0,40}$/).map((s) => `?${s.replace(/#/g, '')}`),
);

describe('fuzzing every route', () => {
  it('thousands of malformed requests get 4xx or a typed error, never a 5xx or a crash', async () => {
    const server = await startServer({ API_KEYS: KEY, MAX_BODY_BYTES: 256 });
    let requests = 0;
    await fc.assert(
      fc.asyncProperty(route, headers, body, query, async ([method, path], h, b, q) => {
        const fullPath = path.includes('?') ? path : `${path}${q}`;
        const answer = await send(server.port, method, fullPath, h, method === 'GET' ? undefined : b);
        requests++;
        expect(answer.status, `${method} ${fullPath} → ${answer.status} ${answer.body.slice(0, 200)}`).toBeLessThan(500);
        expect(answer.status).toBeGreaterThanOrEqual(200);
      }),
      { numRuns: 2500 },
    );
    expect(requests).toBeGreaterThanOrEqual(2500);

    const ok = await send(
      server.port,
      'POST',
      '/v1/chat/stream',
      { 'content-type': 'application/json', authorization: `Bearer ${KEY}` },
      '{"message":"still here"}',
    );
    expect(ok.status).toBe(200);
    expect(ok.body).toContain('"done": true');
  }, 120_000);

  it('malformed WebSocket frames, batches and connection params get typed errors, never a crash', async () => {
    const server = await startServer({ API_KEYS: KEY });
    const base = `${server.url.replace('http', 'ws')}/trpc`;
    const replies: string[] = [];
    let ws: WebSocket | undefined;
    const call = fc.record({
      id: fc.oneof(fc.integer(), fc.string(), fc.constant(null)),
      jsonrpc: fc.oneof(fc.constant(undefined), fc.constant('2.0'), fc.string({ maxLength: 5 })),
      method: fc.oneof(fc.constantFrom('query', 'mutation', 'subscription', 'subscription.stop', 'connectionParams'), fc.string()),
      params: fc.oneof(
        fc.constant(undefined),
        fc.record({ path: fc.oneof(fc.constantFrom('chat.stream', 'chat.history', 'chat.cancel', 'health'), fc.string()), input: fc.jsonValue() }),
      ),
    });
    // What a client sends first on `?connectionParams=1`: the key, a wrong one, or anything at all.
    const params = fc.oneof(
      fc
        .record({ method: fc.constant('connectionParams'), data: fc.record({ apiKey: fc.oneof(fc.constant(KEY), fc.string({ maxLength: 40 })) }) })
        .map((o) => JSON.stringify(o)),
      fc.record({ method: fc.oneof(fc.constant('connectionParams'), fc.string()), data: fc.jsonValue() }).map((o) => JSON.stringify(o)),
      fc.string({ maxLength: 100 }),
    );
    const frame = fc.oneof(
      fc.string({ maxLength: 200 }),
      fc.json({ maxDepth: 4 }),
      call.map((o) => JSON.stringify(o)),
      // Batches, up to and over the limit (WS_MAX_BATCH, 16).
      fc.array(fc.oneof(call, fc.jsonValue()), { maxLength: 20 }).map((calls) => JSON.stringify(calls)),
      params,
      fc.uint8Array({ maxLength: 100 }).map((a) => Buffer.from(a)),
    );
    // Now and then a new connection, with or without connection params.
    const connection = fc.oneof({ arbitrary: fc.constant(null), weight: 9 }, { arbitrary: fc.record({ withParams: fc.boolean(), first: params }), weight: 1 });
    await fc.assert(
      fc.asyncProperty(connection, frame, async (fresh, data) => {
        if (fresh || ws?.readyState !== WebSocket.OPEN) {
          ws?.close();
          const socket = new WebSocket(fresh?.withParams ? `${base}?connectionParams=1` : base);
          socket.on('message', (reply) => replies.push(String(reply)));
          socket.on('error', () => undefined);
          await once(socket, 'open');
          if (fresh?.withParams) socket.send(fresh.first);
          ws = socket;
        }
        if (ws.readyState === WebSocket.OPEN) ws.send(data);
      }),
      { numRuns: 1000 },
    );
    // A ping-pong round trip: everything sent before it has been handled.
    if (ws?.readyState === WebSocket.OPEN) {
      const last = ws;
      last.send('PING');
      await new Promise<void>((resolve) => {
        last.on('message', (d) => String(d) === 'PONG' && resolve());
        last.on('close', () => resolve());
      });
      last.close();
    }
    expect(replies.length).toBeGreaterThan(100);
    for (const reply of replies) {
      if (reply === 'PONG' || reply === 'PING') continue;
      const parsed = JSON.parse(reply) as { error?: { json?: { data?: { httpStatus?: number } } } };
      const status = parsed.error?.json?.data?.httpStatus;
      if (status !== undefined) expect(status).toBeLessThan(500);
    }
    const { client } = stockClient(server.url, 'ws', { apiKey: KEY });
    expect((await collectStream(client, { message: 'still here', sessionId: 'fuzz-after' })).events.at(-1)).toMatchObject({ type: 'done' });
  }, 120_000);
});
