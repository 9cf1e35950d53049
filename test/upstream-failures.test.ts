import { describe, expect, it } from 'vitest';
import { UPSTREAM_MESSAGES } from '../server/core/providers/upstream-errors.ts';
import type { ErrorCode } from '../shared/errors.ts';
import { SessionHistory, StreamEvent } from '../shared/index.ts';
import { DEFAULT_TOKENS, refusedBaseURL, startFakeUpstream, UPSTREAM_SECRET, type UpstreamPlan } from './helpers/fake-upstream.ts';
import { chunkText, postCompletion } from './helpers/openai-wire.ts';
import { startServer } from './helpers/server.ts';
import { parseSse, rawRequest } from './helpers/sse.ts';
import { collectStream, stockClient } from './helpers/trpc-clients.ts';

interface Failure {
  readonly name: string;
  /** A plan for the fake upstream, or `refused` for a port where nothing listens. */
  readonly plan: UpstreamPlan | 'refused';
  readonly code: ErrorCode;
  readonly message: string;
  /** Tokens the upstream sent before failing. */
  readonly tokensBefore: number;
  /** HTTP status on the OpenAI route when the failure comes before the first token. */
  readonly status?: number;
  readonly retryAfterSeconds?: number;
}

const FAILURES: readonly Failure[] = [
  { name: 'bad key (401)', plan: { kind: 'status', status: 401 }, code: 'upstream_auth', message: UPSTREAM_MESSAGES.auth, tokensBefore: 0, status: 502 },
  { name: 'forbidden (403)', plan: { kind: 'status', status: 403 }, code: 'upstream_auth', message: UPSTREAM_MESSAGES.auth, tokensBefore: 0, status: 502 },
  {
    name: 'rate limit (429 with retry-after)',
    plan: { kind: 'status', status: 429, headers: { 'retry-after': '7' } },
    code: 'upstream_rate_limited',
    message: UPSTREAM_MESSAGES.rateLimited,
    tokensBefore: 0,
    status: 503,
    retryAfterSeconds: 7,
  },
  {
    name: 'server error (500)',
    plan: { kind: 'status', status: 500 },
    code: 'upstream_error',
    message: UPSTREAM_MESSAGES.server,
    tokensBefore: 0,
    status: 502,
  },
  { name: 'bad gateway (502)', plan: { kind: 'status', status: 502 }, code: 'upstream_error', message: UPSTREAM_MESSAGES.server, tokensBefore: 0, status: 502 },
  { name: 'connection refused', plan: 'refused', code: 'upstream_error', message: UPSTREAM_MESSAGES.connection, tokensBefore: 0, status: 502 },
  { name: 'slow first token', plan: { kind: 'silent' }, code: 'upstream_timeout', message: UPSTREAM_MESSAGES.firstTokenTimeout, tokensBefore: 0, status: 504 },
  { name: 'stall between tokens', plan: { kind: 'stall', after: 2 }, code: 'upstream_timeout', message: UPSTREAM_MESSAGES.stall, tokensBefore: 2 },
  { name: 'malformed chunk', plan: { kind: 'malformed', after: 2 }, code: 'upstream_error', message: UPSTREAM_MESSAGES.malformed, tokensBefore: 2 },
  {
    name: 'error chunk in a 200 stream',
    plan: { kind: 'error-chunk', after: 2 },
    code: 'upstream_error',
    message: UPSTREAM_MESSAGES.errorInStream,
    tokensBefore: 2,
  },
  { name: 'connection cut mid-stream', plan: { kind: 'drop', after: 3 }, code: 'upstream_error', message: UPSTREAM_MESSAGES.server, tokensBefore: 3 },
];

type Way = 'sse-route' | 'trpc-ws' | 'trpc-sse' | 'openai-route';
const WAYS: readonly Way[] = ['sse-route', 'trpc-ws', 'trpc-sse', 'openai-route'];

async function sluiceInFrontOf(failure: Failure) {
  let baseURL: string;
  if (failure.plan === 'refused') baseURL = await refusedBaseURL();
  else baseURL = (await startFakeUpstream(failure.plan)).baseURL;
  return startServer({
    LLM_PROVIDER: 'openai',
    OPENAI_BASE_URL: baseURL,
    LLM_MODEL: 'fake-model',
    // Generous enough for a cold process on a busy 2-core machine; the stall plans hang until cut.
    UPSTREAM_FIRST_TOKEN_TIMEOUT_MS: 1500,
    UPSTREAM_STALL_TIMEOUT_MS: 1500,
  });
}

async function historyOf(url: string, sessionId: string) {
  return SessionHistory.parse(await (await fetch(`${url}/v1/sessions/${sessionId}/messages`)).json());
}

/** One turn on the SSE route; resolves with its frames once the response has ended. */
async function sayOnSse(url: string, message: string, sessionId: string): Promise<Array<{ data: string }>> {
  const res = await rawRequest(`${url}/v1/chat/stream`, {
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ message, session_id: sessionId }),
  });
  return parseSse(res.body.toString('utf8'));
}

/** Sluice in front of a fake upstream (which answers as planned), and one session's turns on the SSE route. */
async function sessionBehindUpstream(sessionId: string) {
  const upstream = await startFakeUpstream({ kind: 'ok' });
  const server = await startServer({ LLM_PROVIDER: 'openai', OPENAI_BASE_URL: upstream.baseURL, LLM_MODEL: 'fake-model' });
  return { upstream, server, say: (message: string) => sayOnSse(server.url, message, sessionId) };
}

describe.each(FAILURES)('upstream failure: $name', (failure) => {
  const partial = DEFAULT_TOKENS.slice(0, failure.tokensBefore).join('');

  it.each(WAYS)('on %s: the documented error, the partial kept as failed, nothing leaked or left running', async (way) => {
    const server = await sluiceInFrontOf(failure);
    const sessionId = `fail-${way}`;

    if (way === 'sse-route') {
      const res = await rawRequest(`${server.url}/v1/chat/stream`, {
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ message: 'hello', session_id: sessionId }),
      });
      expect(res.status).toBe(200);
      const text = res.body.toString('utf8');
      const frames = parseSse(text);
      const deltas = frames.filter((f) => f.event === 'message').map((f) => JSON.parse(f.data).delta as string);
      expect(deltas.join('')).toBe(partial);
      const last = frames.at(-1)!;
      expect(last.event).toBe('error');
      // The contract's exact layout: message and partial, nothing more (no code, no retry hint).
      expect(last.data).toBe(`{"message": "${failure.message}", "partial": "${partial}"}`);
      expect(text).not.toContain(UPSTREAM_SECRET);
    } else if (way === 'trpc-ws' || way === 'trpc-sse') {
      const { client } = stockClient(server.url, way === 'trpc-ws' ? 'ws' : 'sse');
      const { events } = await collectStream(client, { message: 'hello', sessionId });
      for (const event of events) StreamEvent.parse(event);
      expect(events.slice(0, -1).map((e) => (e.type === 'delta' ? e.delta : '?'))).toEqual(DEFAULT_TOKENS.slice(0, failure.tokensBefore));
      expect(events.at(-1)).toEqual({
        type: 'error',
        code: failure.code,
        message: failure.message,
        partial,
        ...(failure.retryAfterSeconds === undefined ? {} : { retryAfterSeconds: failure.retryAfterSeconds }),
        // What the reply consumed, counted by Sluice: nothing when the upstream failed before its first token.
        usage:
          failure.tokensBefore === 0
            ? { promptTokens: 0, completionTokens: 0, estimated: true }
            : { promptTokens: expect.any(Number), completionTokens: expect.any(Number), estimated: true },
      });
    } else {
      const answer = await postCompletion(
        server.url,
        { model: 'fake-model', messages: [{ role: 'user', content: 'hello' }], stream: true },
        { 'x-sluice-session': sessionId },
      );
      expect(answer.text).not.toContain(UPSTREAM_SECRET);
      const expectedError = { error: { message: failure.message, type: expect.any(String), param: null, code: failure.code } };
      if (failure.tokensBefore === 0) {
        // Before the first token nothing was sent: a real status, OpenAI's error body, the retry hint.
        expect(answer.status).toBe(failure.status);
        expect(answer.errorBody).toEqual(expectedError);
        expect(answer.headers.get('retry-after')).toBe(failure.retryAfterSeconds === undefined ? null : String(failure.retryAfterSeconds));
      } else {
        // Mid-stream, as OpenAI does: an error object as a data line, and no [DONE].
        expect(answer.status).toBe(200);
        expect(chunkText(answer.chunks)).toBe(partial);
        expect(answer.error).toEqual(expectedError);
        expect(answer.done).toBe(false);
      }
    }

    const history = await historyOf(server.url, sessionId);
    expect(history.messages.map((m) => [m.role, m.content, m.status])).toEqual([
      ['user', 'hello', 'complete'],
      ['assistant', partial, 'failed'],
    ]);
    // The test server's afterEach also checks that no generation or listener is left.
    expect(server.sluice.service.runningCount).toBe(0);
  });
});

describe('upstream failures on the stateless OpenAI route', () => {
  it('a non-streaming request gets the status and OpenAI error body', async () => {
    const upstream = await startFakeUpstream({ kind: 'status', status: 401 });
    const server = await startServer({ LLM_PROVIDER: 'openai', OPENAI_BASE_URL: upstream.baseURL, LLM_MODEL: 'm' });
    const answer = await postCompletion(server.url, { model: 'm', messages: [{ role: 'user', content: 'hi' }] });
    expect(answer.status).toBe(502);
    expect(answer.errorBody).toEqual({ error: { message: UPSTREAM_MESSAGES.auth, type: 'server_error', param: null, code: 'upstream_auth' } });
    expect(answer.text).not.toContain(UPSTREAM_SECRET);
  });

  it('a non-streaming request whose upstream fails mid-reply gets the error, not a truncated completion', async () => {
    const upstream = await startFakeUpstream({ kind: 'error-chunk', after: 2 });
    const server = await startServer({ LLM_PROVIDER: 'openai', OPENAI_BASE_URL: upstream.baseURL, LLM_MODEL: 'm' });
    const answer = await postCompletion(server.url, { model: 'm', messages: [{ role: 'user', content: 'hi' }], stream: false });
    expect(answer.status).toBe(502);
    expect(answer.errorBody?.error.code).toBe('upstream_error');
  });
});

describe('an upstream that sends [DONE] and keeps its response open', () => {
  it('the reply is complete at [DONE], whatever the stall limit (0: none), and the request is let go', async () => {
    const upstream = await startFakeUpstream({ kind: 'done-open' });
    const server = await startServer({ LLM_PROVIDER: 'openai', OPENAI_BASE_URL: upstream.baseURL, LLM_MODEL: 'fake-model', UPSTREAM_STALL_TIMEOUT_MS: 0 });
    const frames = await sayOnSse(server.url, 'hello', 'done-open');
    expect(JSON.parse(frames.at(-1)!.data)).toEqual({ delta: '', done: true, total_chunks: DEFAULT_TOKENS.length });
    const history = await historyOf(server.url, 'done-open');
    expect(history.messages[1]).toMatchObject({ role: 'assistant', status: 'complete', content: DEFAULT_TOKENS.join('') });
    // The open response does not hold a connection for good.
    await upstream.requests[0]!.closed;
  });
});

describe('an upstream that finishes its reply, then breaks or falls silent before [DONE]', () => {
  it.each(['drop', 'stall'] as const)('on %s: the reply is complete (it said why it finished), on the stream and the non-streaming route', async (then) => {
    const upstream = await startFakeUpstream({ kind: 'finished-then', then });
    // A silence after the finish chunk ends at the stall limit, as any silence, but the reply is whole.
    const server = await startServer({
      LLM_PROVIDER: 'openai',
      OPENAI_BASE_URL: upstream.baseURL,
      LLM_MODEL: 'fake-model',
      UPSTREAM_STALL_TIMEOUT_MS: 1500,
    });
    const startedAt = performance.now();
    const res = await rawRequest(`${server.url}/v1/chat/stream`, {
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ message: 'hello', session_id: `finished-${then}` }),
    });
    const frames = parseSse(res.body.toString('utf8'));
    expect(JSON.parse(frames.at(-1)!.data)).toEqual({ delta: '', done: true, total_chunks: DEFAULT_TOKENS.length });
    expect(performance.now() - startedAt).toBeLessThan(10_000);
    const history = await historyOf(server.url, `finished-${then}`);
    expect(history.messages[1]).toMatchObject({ role: 'assistant', status: 'complete', content: DEFAULT_TOKENS.join('') });

    const answer = await fetch(`${server.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'fake-model', messages: [{ role: 'user', content: 'hello' }] }),
    });
    expect(answer.status).toBe(200);
    const completion = (await answer.json()) as { choices: Array<{ message: { content: string }; finish_reason: string }> };
    expect(completion.choices[0]).toMatchObject({ message: { content: DEFAULT_TOKENS.join('') }, finish_reason: 'stop' });
  });
});

describe('an upstream whose stream is odd but whole', () => {
  it.each([
    { name: 'finish_reason on every chunk, 1.2 s apart', plan: { kind: 'odd-stream', delayMs: 1200, finishEvery: true } },
    { name: 'labelled application/json', plan: { kind: 'odd-stream', delayMs: 0, contentType: 'application/json' } },
  ] as const)(
    '$name: the whole reply, streamed',
    async ({ plan }) => {
      const upstream = await startFakeUpstream(plan);
      const server = await startServer({ LLM_PROVIDER: 'openai', OPENAI_BASE_URL: upstream.baseURL, LLM_MODEL: 'fake-model' });
      const frames = (await sayOnSse(server.url, 'hello', 'odd')).map((f) => JSON.parse(f.data) as { delta: string });
      expect(frames.map((f) => f.delta).join('')).toBe(DEFAULT_TOKENS.join(''));
      expect(frames.at(-1)).toEqual({ delta: '', done: true, total_chunks: DEFAULT_TOKENS.length });
    },
    20_000,
  );
});

describe('an upstream that answers one JSON completion to a streamed request', () => {
  it('the reply is that completion, with its usage, from one call (not an error, nor retried)', async () => {
    const upstream = await startFakeUpstream({ kind: 'json' });
    const server = await startServer({ LLM_PROVIDER: 'openai', OPENAI_BASE_URL: upstream.baseURL, LLM_MODEL: 'fake-model', UPSTREAM_RETRIES: 2 });
    const frames = await sayOnSse(server.url, 'hello', 'json-answer');
    expect(frames.map((f) => JSON.parse(f.data) as unknown)).toEqual([
      { delta: DEFAULT_TOKENS.join(''), done: false, chunk_index: 1 },
      { delta: '', done: true, total_chunks: 1 },
    ]);
    const history = await historyOf(server.url, 'json-answer');
    expect(history.messages[1]).toMatchObject({
      role: 'assistant',
      status: 'complete',
      content: DEFAULT_TOKENS.join(''),
      usage: { promptTokens: 9, completionTokens: 4 },
    });
    expect(upstream.requests).toHaveLength(1);
  });
});

describe('the turn after a reply that failed or said nothing', () => {
  it('a message sent again after a reply that failed before its first token goes upstream once', async () => {
    const { upstream, say } = await sessionBehindUpstream('resent');
    upstream.plan({ kind: 'status', status: 500 });
    await say('What is 2+2?');
    await say('What is 2+2?');
    expect(upstream.requests[1]!.body['messages']).toEqual([{ role: 'user', content: 'What is 2+2?' }]);
  });

  it('an empty reply that completed (a model that said nothing) is not sent upstream either', async () => {
    const { upstream, server, say } = await sessionBehindUpstream('silent-model');
    upstream.plan({ kind: 'ok', tokens: [] });
    await say('q1');
    expect((await historyOf(server.url, 'silent-model')).messages.map((m) => [m.role, m.status, m.content])).toEqual([
      ['user', 'complete', 'q1'],
      ['assistant', 'complete', ''],
    ]);
    await say('q2');
    expect(upstream.requests[1]!.body['messages']).toEqual([{ role: 'user', content: 'q1\n\nq2' }]);
  });
});

describe('the turn after a reply that failed', () => {
  it('sends no empty assistant message upstream (APIs such as Anthropic refuse one): an unanswered message joins the next, a partial reply stays', async () => {
    const { upstream, server, say } = await sessionBehindUpstream('after-failure');
    upstream.plan({ kind: 'status', status: 500 });
    await say('first');
    await say('second');
    expect(upstream.requests[1]!.body['messages']).toEqual([{ role: 'user', content: 'first\n\nsecond' }]);

    upstream.plan({ kind: 'drop', after: 2 });
    await say('third');
    await say('fourth');
    expect(upstream.requests[3]!.body['messages']).toEqual([
      { role: 'user', content: 'first\n\nsecond' },
      { role: 'assistant', content: DEFAULT_TOKENS.join('') },
      { role: 'user', content: 'third' },
      { role: 'assistant', content: DEFAULT_TOKENS.slice(0, 2).join('') },
      { role: 'user', content: 'fourth' },
    ]);
    const history = await historyOf(server.url, 'after-failure');
    expect(history.messages.map((m) => [m.role, m.status])).toEqual([
      ['user', 'complete'],
      ['assistant', 'failed'],
      ['user', 'complete'],
      ['assistant', 'complete'],
      ['user', 'complete'],
      ['assistant', 'failed'],
      ['user', 'complete'],
      ['assistant', 'complete'],
    ]);
  });
});
