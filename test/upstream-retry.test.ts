import OpenAI from 'openai';
import { describe, expect, it } from 'vitest';
import { UPSTREAM_MESSAGES } from '../server/core/providers/upstream-errors.ts';
import type { StreamEvent } from '../shared/index.ts';
import { DEFAULT_TOKENS, startFakeUpstream, type FakeUpstream, type UpstreamPlan } from './helpers/fake-upstream.ts';
import { postCompletion } from './helpers/openai-wire.ts';
import { startServer } from './helpers/server.ts';
import { collectStream, stockClient } from './helpers/trpc-clients.ts';

const OK: UpstreamPlan = { kind: 'ok' };
const REPLY = DEFAULT_TOKENS.join('');

async function setup(plans: UpstreamPlan[], settings: Record<string, string | number> = {}): Promise<{ upstream: FakeUpstream; url: string }> {
  const upstream = await startFakeUpstream(OK);
  upstream.plan(...plans);
  const server = await startServer({
    LLM_PROVIDER: 'openai',
    OPENAI_BASE_URL: upstream.baseURL,
    LLM_MODEL: 'fake-model',
    UPSTREAM_RETRY_BASE_MS: 5,
    // Generous enough for a cold process on a busy 2-core machine; the stall plans hang until cut.
    UPSTREAM_FIRST_TOKEN_TIMEOUT_MS: 1500,
    UPSTREAM_STALL_TIMEOUT_MS: 1500,
    ...settings,
  });
  return { upstream, url: server.url };
}

async function reply(url: string, sessionId = 'retry'): Promise<StreamEvent[]> {
  const { client } = stockClient(url, 'ws');
  return (await collectStream(client, { message: 'hello', sessionId })).events;
}

const textOf = (events: StreamEvent[]) => events.map((e) => (e.type === 'delta' ? e.delta : '')).join('');

describe('retries before the first token', () => {
  it('are off by default: one failed call is the answer', async () => {
    const { upstream, url } = await setup([{ kind: 'status', status: 500 }]);
    const events = await reply(url);
    expect(events).toEqual([
      {
        type: 'error',
        code: 'upstream_error',
        message: UPSTREAM_MESSAGES.server,
        partial: '',
        usage: { promptTokens: 0, completionTokens: 0, estimated: true },
      },
    ]);
    expect(upstream.requests).toHaveLength(1);
  });

  it('when enabled, retry 5xx and a first-token timeout with backoff until a call works', async () => {
    const { upstream, url } = await setup([{ kind: 'status', status: 500 }, { kind: 'silent' }, { kind: 'status', status: 503 }], {
      UPSTREAM_RETRIES: 3,
    });
    const events = await reply(url);
    expect(textOf(events)).toBe(REPLY);
    expect(events.at(-1)).toMatchObject({ type: 'done', totalChunks: DEFAULT_TOKENS.length });
    expect(upstream.requests).toHaveLength(4);
    // The call that timed out was closed by Sluice, not left open.
    expect(upstream.requests[1]!.abortedByClient).toBe(true);
  });

  it('when enabled, retry a connection cut after its headers, before any token (and never one cut after a token)', async () => {
    const { upstream, url } = await setup([{ kind: 'drop', after: 0 }], { UPSTREAM_RETRIES: 2 });
    const events = await reply(url);
    expect(textOf(events)).toBe(REPLY);
    expect(upstream.requests).toHaveLength(2);

    upstream.plan({ kind: 'drop', after: 2 });
    const cut = await reply(url, 'cut-after-tokens');
    expect(cut.at(-1)).toMatchObject({ type: 'error', code: 'upstream_error', partial: DEFAULT_TOKENS.slice(0, 2).join('') });
    expect(upstream.requests).toHaveLength(3);
  });

  it('give up after UPSTREAM_RETRIES more calls', async () => {
    const fail: UpstreamPlan = { kind: 'status', status: 502 };
    const { upstream, url } = await setup([fail, fail, fail, fail], { UPSTREAM_RETRIES: 2 });
    const events = await reply(url);
    expect(events.at(-1)).toMatchObject({ type: 'error', code: 'upstream_error' });
    expect(upstream.requests).toHaveLength(3);
  });

  it("honour a 429's retry-after when it is short, and pass a long one on instead of waiting", async () => {
    const short = await setup([{ kind: 'status', status: 429, headers: { 'retry-after-ms': '20' } }], { UPSTREAM_RETRIES: 1 });
    expect(textOf(await reply(short.url))).toBe(REPLY);
    expect(short.upstream.requests).toHaveLength(2);

    const long = await setup([{ kind: 'status', status: 429, headers: { 'retry-after': '60' } }], { UPSTREAM_RETRIES: 1, UPSTREAM_RETRY_MAX_DELAY_MS: 1000 });
    const events = await reply(long.url);
    expect(events).toEqual([
      {
        type: 'error',
        code: 'upstream_rate_limited',
        message: UPSTREAM_MESSAGES.rateLimited,
        partial: '',
        retryAfterSeconds: 60,
        usage: { promptTokens: 0, completionTokens: 0, estimated: true },
      },
    ]);
    expect(long.upstream.requests).toHaveLength(1);
    // The OpenAI route passes the hint on as Retry-After.
    long.upstream.plan({ kind: 'status', status: 429, headers: { 'retry-after': '60' } });
    const answer = await postCompletion(long.url, { model: 'm', messages: [{ role: 'user', content: 'hi' }] });
    expect(answer.status).toBe(503);
    expect(answer.headers.get('retry-after')).toBe('60');
  });

  it("honour a 5xx's retry-after too (an overloaded upstream asks for a pause), and pass it on when not retrying", async () => {
    const busy: UpstreamPlan = { kind: 'status', status: 503, headers: { 'retry-after': '1' } };
    const paused = await setup([busy], { UPSTREAM_RETRIES: 1, UPSTREAM_RETRY_BASE_MS: 10 });
    expect(textOf(await reply(paused.url))).toBe(REPLY);
    expect(paused.upstream.requests).toHaveLength(2);
    expect(paused.upstream.requests[1]!.receivedAt - paused.upstream.requests[0]!.receivedAt).toBeGreaterThanOrEqual(950);

    const off = await setup([busy]);
    const answer = await postCompletion(off.url, { model: 'm', messages: [{ role: 'user', content: 'hi' }] });
    expect(answer.status).toBe(502);
    expect(answer.headers.get('retry-after')).toBe('1');
  });

  it('make every retry UPSTREAM_RETRIES asks for: a backoff past UPSTREAM_RETRY_MAX_DELAY_MS waits that long instead of giving up', async () => {
    const fail: UpstreamPlan = { kind: 'status', status: 500 };
    const { upstream, url } = await setup(
      Array.from({ length: 6 }, () => fail),
      { UPSTREAM_RETRIES: 6, UPSTREAM_RETRY_BASE_MS: 20, UPSTREAM_RETRY_MAX_DELAY_MS: 40 },
    );
    expect(textOf(await reply(url))).toBe(REPLY);
    expect(upstream.requests).toHaveLength(7);
    for (let i = 1; i < 7; i++) expect(upstream.requests[i]!.receivedAt - upstream.requests[i - 1]!.receivedAt).toBeLessThan(1000);
  });

  it('never retry a rejected key, whatever the setting', async () => {
    const { upstream, url } = await setup([{ kind: 'status', status: 401 }], { UPSTREAM_RETRIES: 3 });
    expect((await reply(url)).at(-1)).toMatchObject({ type: 'error', code: 'upstream_auth' });
    expect(upstream.requests).toHaveLength(1);
  });

  it.each<UpstreamPlan>([
    { kind: 'stall', after: 2 },
    { kind: 'error-chunk', after: 2 },
    { kind: 'malformed', after: 2 },
    { kind: 'drop', after: 2 },
  ])('never happen after the first token ($kind): the partial stands, as failed', async (plan) => {
    const { upstream, url } = await setup([plan], { UPSTREAM_RETRIES: 3 });
    const events = await reply(url, 'after-first');
    expect(events.at(-1)).toMatchObject({ type: 'error', partial: DEFAULT_TOKENS.slice(0, 2).join('') });
    expect(upstream.requests).toHaveLength(1);
    const history = await (await fetch(`${url}/v1/sessions/after-first/messages`)).json();
    expect(history.messages[1]).toMatchObject({ status: 'failed', content: 'Hello from' });
  });
});

describe("the openai SDK's own retries in front of an upstream", () => {
  it.each([408, 409])('an upstream that may answer next time (%i) may be asked again by the SDK', async (status) => {
    const { upstream, url } = await setup([]);
    upstream.fallback = { kind: 'status', status };
    const sdk = new OpenAI({ baseURL: `${url}/v1`, apiKey: 'unused', maxRetries: 2 });
    const failure = await sdk.chat.completions.create({ model: 'm', messages: [{ role: 'user', content: 'hi' }] }).catch((error: unknown) => error);
    expect((failure as InstanceType<typeof OpenAI.APIError>).headers?.get('x-should-retry')).not.toBe('false');
    expect(upstream.requests).toHaveLength(3);
  });

  it.each([400, 401, 404])('an upstream that refuses the request (%i) is asked once: the SDK is told a retry cannot help', async (status) => {
    const { upstream, url } = await setup([]);
    upstream.fallback = { kind: 'status', status };
    const sdk = new OpenAI({ baseURL: `${url}/v1`, apiKey: 'unused', maxRetries: 2 });
    const failure = await sdk.chat.completions.create({ model: 'm', messages: [{ role: 'user', content: 'hi' }] }).catch((error: unknown) => error);
    expect(failure).toBeInstanceOf(OpenAI.APIError);
    expect((failure as InstanceType<typeof OpenAI.APIError>).status).toBe(502);
    expect((failure as InstanceType<typeof OpenAI.APIError>).headers?.get('x-should-retry')).toBe('false');
    expect(upstream.requests).toHaveLength(1);
  });
});
