import { TRPCClientError } from '@trpc/client';
import { describe, expect, it } from 'vitest';
import type { AppRouter } from '../server/router-type.ts';
import { ErrorBody, OpenAIErrorBody } from '../shared/index.ts';
import { rawRequest, streamSseRoute } from './helpers/sse.ts';
import { startServer, type TestServer } from './helpers/server.ts';
import { collectStream, stockClient, type Kind } from './helpers/trpc-clients.ts';

// Every transport admits `chat.stream` through one function: the same bad request gets the same
// answer everywhere. tRPC over WebSocket and over SSE (stock links) must agree on the code, Sluice's
// code and the message; the SSE route and the OpenAI route answer the same cases with their
// documented status and JSON body.

const KEY_A = 'matrix-alpha-0123456789abcdef';
const KEY_B = 'matrix-bravo-0123456789abcdef';
// One key per transport on the rate-limited server, so that each transport meets the limit itself.
const LIMITED = {
  ws: 'limited-ws-0123456789abcdef',
  sse: 'limited-sse-0123456789abcdef',
  route: 'limited-route-0123456789abcdef',
  openai: 'limited-openai-0123456789abcdef',
};
const MAX_CHARS = 100;
const SESSION_ID_RULE = 'must be 1-128 characters of letters, digits, ".", "_", ":" or "-", other than "." and ".."';

interface Expected {
  readonly code: string;
  readonly sluiceCode: string;
  readonly message: string | RegExp;
}

interface Case {
  readonly name: string;
  readonly key?: string | null;
  readonly input: Record<string, unknown>;
  readonly expected: Expected;
  /** The documented SSE route: body and headers for the same request, and its answer. */
  readonly route: { body: unknown; headers?: Record<string, string>; status: number; message?: string | RegExp };
  /** The OpenAI route, where the case applies to it. */
  readonly openai?: { body: unknown; headers?: Record<string, string>; status: number };
  readonly limited?: boolean;
}

const unauthorized: Expected = { code: 'UNAUTHORIZED', sluiceCode: 'unauthorized', message: 'A valid API key or token is required' };
const badRequest = (message: string | RegExp): Expected => ({ code: 'BAD_REQUEST', sluiceCode: 'invalid_request', message });
const notFound: Expected = { code: 'NOT_FOUND', sluiceCode: 'not_found', message: 'No resumable reply for this event id' };
const completion = (content: unknown) => ({ model: 'm', messages: [{ role: 'user', content }] });

let main: TestServer;
let limited: TestServer;
/** An event id of a finished reply of key A. */
let foreignId = '';

const cases = (): Case[] => [
  {
    name: 'no credential',
    key: null,
    input: { message: 'hi', sessionId: 'm1' },
    expected: unauthorized,
    route: { body: { message: 'hi', session_id: 'm1' }, status: 401 },
    openai: { body: completion('hi'), status: 401 },
  },
  {
    name: 'wrong credential',
    key: 'matrix-wrong-0123456789abcdef',
    input: { message: 'hi', sessionId: 'm1' },
    expected: unauthorized,
    route: { body: { message: 'hi', session_id: 'm1' }, status: 401 },
    openai: { body: completion('hi'), status: 401 },
  },
  {
    name: 'empty message',
    input: { message: '', sessionId: 'm2' },
    expected: badRequest('message: must be a non-empty string'),
    route: { body: { message: '', session_id: 'm2' }, status: 422 },
    openai: { body: completion(''), headers: { 'x-sluice-session': 'm2' }, status: 400 },
  },
  {
    name: 'message of the wrong type',
    input: { message: 42, sessionId: 'm3' },
    expected: badRequest('message: Invalid input: expected string, received number'),
    route: { body: { message: 42, session_id: 'm3' }, status: 422 },
    openai: { body: completion(42), status: 400 },
  },
  {
    name: 'no input at all',
    input: {},
    expected: badRequest('message: Invalid input: expected string, received undefined'),
    route: { body: {}, status: 422 },
  },
  {
    name: 'oversized message',
    input: { message: 'x'.repeat(MAX_CHARS + 1), sessionId: 'm4' },
    expected: badRequest(`message: must be at most ${MAX_CHARS} characters`),
    route: { body: { message: 'x'.repeat(MAX_CHARS + 1), session_id: 'm4' }, status: 422 },
    openai: { body: completion('x'.repeat(MAX_CHARS + 1)), headers: { 'x-sluice-session': 'm4' }, status: 400 },
  },
  {
    name: 'message with a NUL character',
    input: { message: 'before\u0000after', sessionId: 'm7' },
    expected: badRequest('message: must not contain the NUL character (U+0000)'),
    route: { body: { message: 'before\u0000after', session_id: 'm7' }, status: 422 },
    openai: { body: completion('before\u0000after'), headers: { 'x-sluice-session': 'm7' }, status: 400 },
  },
  {
    name: 'message that is not valid Unicode',
    input: { message: 'half an emoji \ud83d', sessionId: 'm8' },
    expected: badRequest('message: must be valid Unicode text (it holds an unpaired surrogate)'),
    route: { body: { message: 'half an emoji \ud83d', session_id: 'm8' }, status: 422 },
    openai: { body: completion('half an emoji \ud83d'), headers: { 'x-sluice-session': 'm8' }, status: 400 },
  },
  {
    name: 'bad session id',
    input: { message: 'hi', sessionId: 'no spaces/allowed' },
    expected: badRequest('sessionId: must be 1-128 characters of letters, digits, ".", "_", ":" or "-", other than "." and ".."'),
    route: {
      body: { message: 'hi', session_id: 'no spaces/allowed' },
      status: 422,
      message: 'session_id: must be 1-128 characters of letters, digits, ".", "_", ":" or "-", other than "." and ".."',
    },
    openai: { body: completion('hi'), headers: { 'x-sluice-session': 'no spaces/allowed' }, status: 400 },
  },
  {
    // A URL cannot name it: clients and servers resolve `/v1/sessions/../messages` to `/v1/messages`.
    name: 'session id that is a dot segment',
    input: { message: 'hi', sessionId: '..' },
    expected: badRequest(`sessionId: ${SESSION_ID_RULE}`),
    route: { body: { message: 'hi', session_id: '..' }, status: 422, message: `session_id: ${SESSION_ID_RULE}` },
    openai: { body: completion('hi'), headers: { 'x-sluice-session': '.' }, status: 400 },
  },
  {
    name: 'busy session',
    input: { message: 'again', sessionId: 'busy' },
    expected: { code: 'CONFLICT', sluiceCode: 'session_busy', message: 'A reply is already being generated for this session' },
    route: { body: { message: 'again', session_id: 'busy' }, status: 409 },
    openai: { body: completion('again'), headers: { 'x-sluice-session': 'busy' }, status: 409 },
  },
  {
    name: 'malformed last event id',
    input: { message: 'hi', sessionId: 'm5', lastEventId: 'garbage' },
    expected: badRequest('lastEventId: must look like "<generation>:<seq>"'),
    route: {
      body: { message: 'hi', session_id: 'm5' },
      headers: { 'last-event-id': 'garbage' },
      status: 422,
      message: 'Last-Event-ID: must look like "<generation>:<seq>"',
    },
  },
  {
    name: 'unknown last event id',
    input: { message: 'hi', sessionId: 'm5', lastEventId: 'AAAAAAAAAAAAAAAA:1' },
    expected: notFound,
    route: { body: { message: 'hi', session_id: 'm5' }, headers: { 'last-event-id': 'AAAAAAAAAAAAAAAA:1' }, status: 404 },
  },
  {
    name: "another key's last event id",
    key: KEY_B,
    input: { message: 'hi', sessionId: 'm5', lastEventId: '<foreign>' },
    expected: notFound,
    route: { body: { message: 'hi', session_id: 'm5' }, headers: { 'last-event-id': '<foreign>' }, status: 404 },
  },
  {
    name: 'rate limited',
    limited: true,
    input: { message: 'hi', sessionId: 'm6' },
    expected: { code: 'TOO_MANY_REQUESTS', sluiceCode: 'rate_limited', message: 'Too many requests: the limit is 1 a minute' },
    route: { body: { message: 'hi', session_id: 'm6' }, status: 429 },
    openai: { body: completion('hi'), status: 429 },
  },
];

const withForeign = <T>(value: T): T => JSON.parse(JSON.stringify(value).replaceAll('<foreign>', foreignId)) as T;
const auth = (key: string | null | undefined): Record<string, string> => (key ? { authorization: `Bearer ${key}` } : {});

async function trpcError(kind: Kind, c: Case): Promise<{ code: unknown; sluiceCode: unknown; message: string }> {
  const server = c.limited ? limited : main;
  const key = c.limited ? LIMITED[kind] : c.key === undefined ? KEY_A : c.key;
  const { client } = stockClient(server.url, kind, key ? { apiKey: key } : {});
  if (c.limited) await client.chat.history.query({ sessionId: 'spend-the-limit' });
  const error = await collectStream(client, withForeign(c.input) as { message: string }).then(
    () => new Error('the stream was accepted'),
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(TRPCClientError);
  const { data, message } = error as TRPCClientError<AppRouter>;
  return { code: data?.code, sluiceCode: data?.sluiceCode, message };
}

async function routeAnswer(path: string, c: Case, body: unknown, headers: Record<string, string> = {}, limitedKey?: string) {
  const server = c.limited ? limited : main;
  const key = c.limited ? limitedKey : c.key === undefined ? KEY_A : c.key;
  if (c.limited) await fetch(`${server.url}/v1/sessions/spend-the-limit/messages`, { headers: auth(key) });
  return rawRequest(`${server.url}${path}`, {
    headers: { 'content-type': 'application/json', ...auth(key), ...withForeign(headers) },
    body: JSON.stringify(body),
  });
}

describe('chat.stream admission: one answer per bad request, on every transport', () => {
  // Servers are closed after each test (and checked for leaks), so each case starts its own.
  async function setup(c: Case): Promise<void> {
    main = await startServer({ API_KEYS: `${KEY_A},${KEY_B}`, MAX_MESSAGE_CHARS: MAX_CHARS, SIM_DELAY_MS: 20, RESUME_GRACE_MS: 0 });
    limited = await startServer({ API_KEYS: Object.values(LIMITED).join(','), RATE_LIMIT_PER_MINUTE: 1 });
    if (!JSON.stringify(c).includes('<foreign>')) return;
    let first: string | undefined;
    for await (const frame of streamSseRoute(main.url, { message: 'short', session_id: 'owned-by-a' }, { headers: auth(KEY_A) })) first ??= frame.id;
    foreignId = first!;
  }

  for (const c of cases()) {
    it(c.name, async () => {
      await setup(c);
      // The busy session: a reply of key A runs in it for the whole case.
      let busy: AsyncGenerator | undefined;
      if (c.name === 'busy session') {
        busy = streamSseRoute(main.url, { message: 'a long reply '.repeat(5), session_id: 'busy' }, { headers: auth(KEY_A) });
        await busy.next();
      }
      try {
        const ws = await trpcError('ws', c);
        const sse = await trpcError('sse', c);
        expect(ws).toEqual(sse);
        expect(ws).toEqual({ code: c.expected.code, sluiceCode: c.expected.sluiceCode, message: expect.stringMatching(asPattern(c.expected.message)) });

        const route = await routeAnswer('/v1/chat/stream', c, c.route.body, c.route.headers, LIMITED.route);
        expect(route.status).toBe(c.route.status);
        expect(ErrorBody.parse(JSON.parse(route.body.toString())).error).toEqual({
          code: c.expected.sluiceCode,
          message: expect.stringMatching(asPattern(c.route.message ?? c.expected.message)),
        });

        if (c.openai) {
          const openai = await routeAnswer('/v1/chat/completions', c, c.openai.body, c.openai.headers, LIMITED.openai);
          expect(openai.status).toBe(c.openai.status);
          expect(OpenAIErrorBody.parse(JSON.parse(openai.body.toString())).error.code).toBe(c.expected.sluiceCode);
        }
      } finally {
        if (busy) {
          await fetch(`${main.url}/v1/chat/cancel`, {
            method: 'POST',
            headers: { 'content-type': 'application/json', ...auth(KEY_A) },
            body: '{"session_id":"busy"}',
          });
          for await (const _ of busy) void _;
        }
      }
    });
  }
});

function asPattern(message: string | RegExp): RegExp {
  return typeof message === 'string' ? new RegExp(`^${message.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`) : message;
}
