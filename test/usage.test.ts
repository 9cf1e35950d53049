import { countTokens } from 'gpt-tokenizer/encoding/o200k_base';
import OpenAI, { APIError } from 'openai';
import type { ChatCompletionChunk } from 'openai/resources/chat/completions';
import { describe, expect, it } from 'vitest';
import { SIMULATED_MODEL_ID } from '../server/core/providers/simulated.ts';
import { estimateUsage } from '../server/core/usage.ts';
import { simulatedDeltas } from '../server/core/providers/simulated.ts';
import { SessionHistory } from '../shared/index.ts';
import { DEFAULT_TOKENS, startFakeUpstream } from './helpers/fake-upstream.ts';
import { startServer } from './helpers/server.ts';
import { collectStream, stockClient } from './helpers/trpc-clients.ts';

// Usage on every reply: when the provider reports none, Sluice counts o200k_base tokens itself.
// The expected figures are counted here with gpt-tokenizer directly, with the chat format's
// overhead as OpenAI's cookbook gives it (3 tokens a message, 3 to prime the reply).

const tokens = (text: string): number => countTokens(text, { disallowedSpecial: new Set() });
const promptOf = (...contents: string[]): number => 3 + contents.reduce((n, c) => n + 3 + tokens(c), 0);
const reply = (prompt: string): string => simulatedDeltas(prompt).join('');

const sdk = (url: string, headers: Record<string, string> = {}) =>
  new OpenAI({ baseURL: `${url}/v1`, apiKey: 'not-checked', maxRetries: 0, defaultHeaders: headers });

async function history(url: string, sessionId: string): Promise<SessionHistory> {
  return SessionHistory.parse(await (await fetch(`${url}/v1/sessions/${sessionId}/messages`)).json());
}

/** Streams with include_usage; returns every chunk, and the error the stream ended with, if any. */
async function streamWithUsage(client: OpenAI, content: string, onChunk?: (chunk: ChatCompletionChunk) => void) {
  const chunks: ChatCompletionChunk[] = [];
  let error: unknown;
  try {
    const stream = await client.chat.completions.create({
      model: SIMULATED_MODEL_ID,
      messages: [{ role: 'user', content }],
      stream: true,
      stream_options: { include_usage: true },
    });
    for await (const chunk of stream) {
      chunks.push(chunk);
      onChunk?.(chunk);
    }
  } catch (caught) {
    error = caught;
  }
  const text = chunks.map((c) => c.choices[0]?.delta.content ?? '').join('');
  return { chunks, error, text, usage: chunks.at(-1)?.usage };
}

async function metricValue(url: string, series: string): Promise<number | undefined> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

describe('usage on every reply', () => {
  it('the simulator reports none: the openai SDK with include_usage still gets a usage chunk, estimated from o200k_base; so does a non-streamed reply', async () => {
    const { url } = await startServer();
    const streamed = await streamWithUsage(sdk(url), 'explain caching');
    expect(streamed.error).toBeUndefined();
    expect(streamed.chunks.at(-1)!.choices).toEqual([]);
    const expected = { prompt_tokens: promptOf('explain caching'), completion_tokens: tokens(reply('explain caching')) };
    expect(streamed.usage).toEqual({ ...expected, total_tokens: expected.prompt_tokens + expected.completion_tokens });
    expect(streamed.chunks.slice(0, -1).every((c) => c.usage === null)).toBe(true);

    const completion = await sdk(url).chat.completions.create({ model: 'm', messages: [{ role: 'user', content: 'explain caching' }] });
    expect(completion.usage).toEqual(streamed.usage);
  });

  it('in a session the prompt is the stored history; history keeps each reply with its usage, marked estimated; Prometheus counts it', async () => {
    const { url } = await startServer();
    const client = sdk(url, { 'X-Sluice-Session': 'usage-turns' });
    await streamWithUsage(client, 'first question');
    const second = await streamWithUsage(client, 'second question');
    expect(second.usage).toMatchObject({ prompt_tokens: promptOf('first question', reply('first question'), 'second question') });

    const { messages } = await history(url, 'usage-turns');
    expect(messages.map((m) => m.usage)).toEqual([
      undefined,
      { promptTokens: promptOf('first question'), completionTokens: tokens(reply('first question')), estimated: true },
      undefined,
      { promptTokens: second.usage!.prompt_tokens, completionTokens: second.usage!.completion_tokens, estimated: true },
    ]);
    const completion = messages[1]!.usage!.completionTokens + messages[3]!.usage!.completionTokens;
    expect(await metricValue(url, 'sluice_usage_tokens_total{kind="completion",outcome="completed",source="estimated"}')).toBe(completion);
    expect(await metricValue(url, 'sluice_usage_tokens_total{kind="prompt",outcome="completed",source="estimated"}')).toBe(
      messages[1]!.usage!.promptTokens + messages[3]!.usage!.promptTokens,
    );
  });

  it('an upstream that reports no usage: the SDK still gets a usage chunk; one that does has its counts passed on as they are', async () => {
    const upstream = await startFakeUpstream({ kind: 'ok' });
    const { url } = await startServer({ LLM_PROVIDER: 'openai', OPENAI_BASE_URL: upstream.baseURL, LLM_MODEL: 'fake' });
    const silent = await streamWithUsage(sdk(url, { 'X-Sluice-Session': 'up' }), 'hi');
    expect(upstream.requests[0]!.body['stream_options']).toEqual({ include_usage: true });
    expect(silent.text).toBe(DEFAULT_TOKENS.join(''));
    expect(silent.usage).toEqual({
      prompt_tokens: promptOf('hi'),
      completion_tokens: tokens(DEFAULT_TOKENS.join('')),
      total_tokens: promptOf('hi') + tokens(DEFAULT_TOKENS.join('')),
    });

    upstream.plan({ kind: 'ok', usage: { prompt: 11, completion: 5 } });
    const reported = await streamWithUsage(sdk(url, { 'X-Sluice-Session': 'up' }), 'again');
    expect(reported.usage).toEqual({ prompt_tokens: 11, completion_tokens: 5, total_tokens: 16 });
    const { messages } = await history(url, 'up');
    expect(messages[1]!.usage).toMatchObject({ estimated: true });
    // The upstream's own counts carry no `estimated` mark.
    expect(messages[3]!.usage).toEqual({ promptTokens: 11, completionTokens: 5 });
    expect(await metricValue(url, 'sluice_usage_tokens_total{kind="completion",outcome="completed",source="provider"}')).toBe(5);
  });

  it("an operator's system prompt (LLM_SYSTEM_PROMPT) is in what the upstream is sent, so it is in the estimated prompt too", async () => {
    const upstream = await startFakeUpstream({ kind: 'ok' });
    const system = 'You are a careful assistant who answers briefly and cites sources. '.repeat(20);
    const { url } = await startServer({ LLM_PROVIDER: 'openai', OPENAI_BASE_URL: upstream.baseURL, LLM_MODEL: 'fake', LLM_SYSTEM_PROMPT: system });
    const answer = await streamWithUsage(sdk(url, { 'X-Sluice-Session': 'sys' }), 'hi');
    expect(upstream.requests[0]!.body['messages']).toEqual([
      { role: 'system', content: system },
      { role: 'user', content: 'hi' },
    ]);
    const expected = await estimateUsage(
      [
        { role: 'system', content: system },
        { role: 'user', content: 'hi' },
      ],
      DEFAULT_TOKENS.join(''),
    );
    expect(answer.usage?.prompt_tokens).toBe(expected!.promptTokens);
    expect((await history(url, 'sys')).messages[1]!.usage).toEqual(expected);
  });

  it("a cancelled reply's usage counts the deltas that were sent: in the SDK's usage chunk before the error, in history and in Prometheus", async () => {
    // Slow tokens and a long resume window: only the cancel stops this reply.
    const { url } = await startServer({ SIM_DELAY_MS: 30, RESUME_GRACE_MS: 60_000 });
    let cancelled: Promise<Response> | undefined;
    let deltas = 0;
    const cut = await streamWithUsage(sdk(url, { 'X-Sluice-Session': 'cut' }), 'a long story', (chunk) => {
      if (chunk.choices[0]?.delta.content && ++deltas === 5) {
        cancelled = fetch(`${url}/v1/chat/cancel`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"session_id": "cut"}' });
      }
    });
    expect(await (await cancelled!).json()).toEqual({ cancelled: true });
    expect(cut.error).toBeInstanceOf(APIError);
    expect((cut.error as APIError).code).toBe('cancelled');
    expect(cut.text.length).toBeLessThan(reply('a long story').length);
    expect(reply('a long story').startsWith(cut.text)).toBe(true);
    // The usage chunk came last before the error: what the cut-short reply consumed.
    expect(cut.usage).toEqual({
      prompt_tokens: promptOf('a long story'),
      completion_tokens: tokens(cut.text),
      total_tokens: promptOf('a long story') + tokens(cut.text),
    });

    const { messages } = await history(url, 'cut');
    expect(messages[1]).toMatchObject({ status: 'interrupted', content: cut.text });
    expect(messages[1]!.usage).toEqual({ promptTokens: promptOf('a long story'), completionTokens: tokens(cut.text), estimated: true });
    expect(await metricValue(url, 'sluice_usage_tokens_total{kind="completion",outcome="cancelled",source="estimated"}')).toBe(tokens(cut.text));
  });

  it("a reply that fails mid-stream keeps the usage of what was produced: in tRPC's error event and in history", async () => {
    const upstream = await startFakeUpstream({ kind: 'drop', after: 2 });
    const { url } = await startServer({ LLM_PROVIDER: 'openai', OPENAI_BASE_URL: upstream.baseURL, LLM_MODEL: 'fake' });
    const { client } = stockClient(url, 'ws');
    const { events } = await collectStream(client, { message: 'hi', sessionId: 'failed' });
    const partial = DEFAULT_TOKENS.slice(0, 2).join('');
    const usage = { promptTokens: promptOf('hi'), completionTokens: tokens(partial), estimated: true };
    expect(events.at(-1)).toMatchObject({ type: 'error', code: 'upstream_error', partial, usage });
    const { messages } = await history(url, 'failed');
    expect(messages[1]).toMatchObject({ status: 'failed', content: partial, usage });
  });
});

describe('usage estimates', () => {
  it('hold the event loop briefly whatever the text: long runs without a space are not counted in time that grows with their square', async () => {
    await estimateUsage([{ role: 'user', content: 'warm up the tables' }], 'ok');
    const message = 'x'.repeat(40_000);
    const reply = '='.repeat(40_000);
    const spaces = ' '.repeat(40_000);
    const startedAt = performance.now();
    const usage = await estimateUsage([{ role: 'user', content: message + spaces }], reply);
    // Measured: 6.4 s for these 120,000 characters when each run was one piece; about 10 ms in pieces.
    expect(performance.now() - startedAt).toBeLessThan(500);
    // The same estimate as counting in one piece, within a token a piece.
    expect(usage!.promptTokens).toBeGreaterThanOrEqual(countTokens('x'.repeat(4000)) * 10);
    expect(usage!.completionTokens).toBeGreaterThan(0);
  });
});
