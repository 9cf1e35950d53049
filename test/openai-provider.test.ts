import OpenAI from 'openai';
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../server/config.ts';
import { providerFrom } from '../server/wiring/provider.ts';
import { createOpenAIProvider, type OpenAIProviderOptions } from '../server/core/providers/openai.ts';
import { retryAfterSeconds } from '../server/core/providers/upstream-errors.ts';
import { startFakeUpstream } from './helpers/fake-upstream.ts';
import { startServer } from './helpers/server.ts';
import { streamSseRoute, type SseFrame } from './helpers/sse.ts';

const BASE: OpenAIProviderOptions = {
  baseURL: 'http://127.0.0.1:1/v1',
  model: 'm',
  includeUsage: true,
  firstTokenTimeoutMs: 1000,
  stallTimeoutMs: 1000,
  retries: 0,
  retryBaseMs: 100,
  retryMaxDelayMs: 1000,
};

describe('openai provider options', () => {
  it('are validated at construction, with messages naming the option', () => {
    expect(() => createOpenAIProvider(BASE)).not.toThrow();
    const bad: Array<[Partial<OpenAIProviderOptions>, RegExp]> = [
      [{ baseURL: 'not a url' }, /baseURL must be an http:\/\/ or https:\/\/ URL, got "not a url"/],
      [{ baseURL: 'ftp://host/v1' }, /baseURL must be an http/],
      [{ model: ' ' }, /model must be a non-empty string/],
      [{ apiKey: '' }, /apiKey must be a non-empty string when given, got "<hidden>"/],
      [{ temperature: 3 }, /temperature must be a number from 0 to 2, got 3/],
      [{ maxTokens: 0 }, /maxTokens must be a positive integer, got 0/],
      [{ systemPrompt: '' }, /systemPrompt must be a non-empty string/],
      [{ firstTokenTimeoutMs: -1 }, /firstTokenTimeoutMs must be a non-negative integer \(0: none\), got -1/],
      [{ stallTimeoutMs: 1.5 }, /stallTimeoutMs must be a non-negative integer/],
      [{ retries: 11 }, /retries must be an integer from 0 to 10, got 11/],
      [{ retryBaseMs: 0 }, /retryBaseMs must be a positive integer, got 0/],
    ];
    for (const [patch, message] of bad) expect(() => createOpenAIProvider({ ...BASE, ...patch }), JSON.stringify(patch)).toThrow(message);
  });

  it('come from the environment, validated with the variable named', () => {
    expect(() => loadConfig({ LLM_PROVIDER: 'openai', OPENAI_BASE_URL: 'http://h/v1' })).toThrow(/LLM_MODEL: is required when LLM_PROVIDER=openai/);
    expect(() => loadConfig({ OPENAI_BASE_URL: 'ftp://h/v1' })).toThrow(/OPENAI_BASE_URL: must be an http/);
    // One Authorization header: the URL's user and password (Basic) or the key (Bearer), not both.
    expect(() => loadConfig({ OPENAI_BASE_URL: 'http://u:p@h/v1', OPENAI_API_KEY: 'sk-1' })).toThrow(
      /OPENAI_BASE_URL: carries a user and password, and OPENAI_API_KEY is set/,
    );
    expect(() => loadConfig({ OPENAI_BASE_URL: 'http://u:p@h/v1' })).not.toThrow();
    expect(() => loadConfig({ UPSTREAM_RETRIES: '11' })).toThrow(ConfigError);
    expect(() => loadConfig({ UPSTREAM_RETRIES: '11' })).toThrow(/UPSTREAM_RETRIES/);
    expect(() => loadConfig({ LLM_TEMPERATURE: 'hot' })).toThrow(/LLM_TEMPERATURE/);
    expect(() => loadConfig({ SIM_TOKENIZER: 'chars' })).toThrow(/SIM_TOKENIZER/);
    const config = loadConfig({ LLM_PROVIDER: 'openai', OPENAI_BASE_URL: 'http://h/v1', LLM_MODEL: 'llama' }, [
      '--llm-temperature',
      '0.2',
      '--upstream-retries',
      '2',
    ]);
    expect(config).toMatchObject({
      LLM_TEMPERATURE: 0.2,
      UPSTREAM_RETRIES: 2,
      UPSTREAM_FIRST_TOKEN_TIMEOUT_MS: 60_000,
      UPSTREAM_STALL_TIMEOUT_MS: 30_000,
      UPSTREAM_RETRY_BASE_MS: 500,
      UPSTREAM_INCLUDE_USAGE: true,
      SIM_TOKENIZER: 'words',
      SIM_USAGE: false,
    });
    expect(providerFrom(config).name).toBe('openai');
    expect(providerFrom(loadConfig({})).name).toBe('simulated');
  });
});

describe('the request sent upstream', () => {
  it('carries the model, the defaults, the system prompt, include_usage and the key', async () => {
    const upstream = await startFakeUpstream();
    const { url } = await startServer({
      LLM_PROVIDER: 'openai',
      OPENAI_BASE_URL: upstream.baseURL,
      OPENAI_API_KEY: 'sk-test-key',
      LLM_MODEL: 'llama-3',
      LLM_TEMPERATURE: 0.3,
      LLM_MAX_TOKENS: 256,
      LLM_SYSTEM_PROMPT: 'Answer in French.',
    });
    for await (const _ of streamSseRoute(url, { message: 'bonjour' }));
    const [request] = upstream.requests;
    expect(request!.headers.authorization).toBe('Bearer sk-test-key');
    expect(request!.body).toEqual({
      model: 'llama-3',
      messages: [
        { role: 'system', content: 'Answer in French.' },
        { role: 'user', content: 'bonjour' },
      ],
      stream: true,
      stream_options: { include_usage: true },
      temperature: 0.3,
      max_tokens: 256,
    });
  });

  it("sends a caller's max_tokens below LLM_MAX_TOKENS, never above it", async () => {
    const upstream = await startFakeUpstream();
    const { url } = await startServer({ LLM_PROVIDER: 'openai', OPENAI_BASE_URL: upstream.baseURL, LLM_MODEL: 'm', LLM_MAX_TOKENS: 256 });
    for (const max_tokens of [16, 1000]) {
      const res = await fetch(`${url}/v1/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'm', messages: [{ role: 'user', content: 'hi' }], max_tokens }),
      });
      expect(res.status).toBe(200);
      await res.text();
    }
    expect(upstream.requests.map((r) => (r.body as { max_tokens?: number }).max_tokens)).toEqual([16, 256]);
  });

  it('without a key sends no Authorization header; UPSTREAM_INCLUDE_USAGE=false leaves stream_options out', async () => {
    const upstream = await startFakeUpstream();
    const { url } = await startServer({ LLM_PROVIDER: 'openai', OPENAI_BASE_URL: upstream.baseURL, LLM_MODEL: 'local', UPSTREAM_INCLUDE_USAGE: false });
    for await (const _ of streamSseRoute(url, { message: 'hi' }));
    expect(upstream.requests[0]!.headers.authorization).toBeUndefined();
    expect(upstream.requests[0]!.body).toEqual({ model: 'local', messages: [{ role: 'user', content: 'hi' }], stream: true });
  });

  it('carries the session as kept: the earlier turns in order, then the message, no more than MAX_HISTORY_MESSAGES', async () => {
    const upstream = await startFakeUpstream();
    const { url } = await startServer({ LLM_PROVIDER: 'openai', OPENAI_BASE_URL: upstream.baseURL, LLM_MODEL: 'm', MAX_HISTORY_MESSAGES: 4 });
    for (const message of ['one', 'two', 'three']) for await (const _ of streamSseRoute(url, { message, session_id: 'turns' }));
    const reply = { role: 'assistant', content: 'Hello from the upstream.' };
    expect(upstream.requests.map((request) => (request.body as { messages: unknown[] }).messages)).toEqual([
      [{ role: 'user', content: 'one' }],
      [{ role: 'user', content: 'one' }, reply, { role: 'user', content: 'two' }],
      // What the session keeps once the turn began (the oldest message trimmed): what the model sees.
      [reply, { role: 'user', content: 'two' }, reply, { role: 'user', content: 'three' }],
    ]);
    const history = (await (await fetch(`${url}/v1/sessions/turns/messages`)).json()) as { messages: Array<{ content: string }> };
    expect(history.messages.map((m) => m.content)).toEqual(['two', reply.content, 'three', reply.content]);
  });

  it("keeps the upstream's usage with the reply in history", async () => {
    const upstream = await startFakeUpstream({ kind: 'ok', usage: { prompt: 11, completion: 5 } });
    const { url } = await startServer({ LLM_PROVIDER: 'openai', OPENAI_BASE_URL: upstream.baseURL, LLM_MODEL: 'm' });
    for await (const _ of streamSseRoute(url, { message: 'hi', session_id: 'usage' }));
    const history = await (await fetch(`${url}/v1/sessions/usage/messages`)).json();
    expect(history.messages[1]).toMatchObject({ status: 'complete', content: 'Hello from the upstream.', usage: { promptTokens: 11, completionTokens: 5 } });
  });
});

describe("the upstream's finish_reason", () => {
  it('reaches the client: a reply cut by the token limit or a content filter is not said to have stopped by itself', async () => {
    const upstream = await startFakeUpstream();
    const { url } = await startServer({ LLM_PROVIDER: 'openai', OPENAI_BASE_URL: upstream.baseURL, LLM_MODEL: 'm' });
    const client = new OpenAI({ baseURL: `${url}/v1`, apiKey: 'not-checked', maxRetries: 0 });
    for (const finish of ['length', 'content_filter', 'stop'] as const) {
      upstream.plan({ kind: 'ok', finish }, { kind: 'ok', finish }, { kind: 'ok', finish });
      const completion = await client.chat.completions.create({ model: 'm', messages: [{ role: 'user', content: 'hi' }] });
      expect(completion.choices[0]!.finish_reason).toBe(finish);
      const reasons: Array<string | null> = [];
      for await (const chunk of await client.chat.completions.create({ model: 'm', messages: [{ role: 'user', content: 'hi' }], stream: true })) {
        reasons.push(chunk.choices[0]?.finish_reason ?? null);
      }
      expect(reasons.filter(Boolean)).toEqual([finish]);
      // The AI SDK's UI stream names them its own way.
      const ui = await fetch(`${url}/v1/ui/chat`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ id: `finish-${finish}`, messages: [{ id: 'u1', role: 'user', parts: [{ type: 'text', text: 'hi' }] }] }),
      });
      const finishLine = (await ui.text()).split('\n').find((line) => line.includes('"type":"finish"'));
      expect(JSON.parse(finishLine!.slice('data: '.length))).toMatchObject({
        finishReason: { length: 'length', content_filter: 'content-filter', stop: 'stop' }[finish],
      });
    }
  });
});

describe('a reasoning model', () => {
  it('is replying while it reasons: its reasoning chunks meet the first-token limit, and a silence in them is a stall', async () => {
    const upstream = await startFakeUpstream({ kind: 'reasoning', everyMs: 100, forMs: 1200 });
    const { url } = await startServer({
      LLM_PROVIDER: 'openai',
      OPENAI_BASE_URL: upstream.baseURL,
      LLM_MODEL: 'm',
      UPSTREAM_FIRST_TOKEN_TIMEOUT_MS: 500,
      UPSTREAM_STALL_TIMEOUT_MS: 500,
    });
    const frames: SseFrame[] = [];
    for await (const frame of streamSseRoute(url, { message: 'think', session_id: 'reasoning' })) frames.push(frame);
    expect(frames.at(-1)!.data).toContain('"done": true');
    // Reasoning that stops for longer than the stall limit is a stall, as silence between tokens is.
    upstream.plan({ kind: 'reasoning', everyMs: 800, forMs: 1600 });
    const stalled: SseFrame[] = [];
    for await (const frame of streamSseRoute(url, { message: 'think slowly', session_id: 'reasoning-stall' })) stalled.push(frame);
    expect(stalled.at(-1)!.event).toBe('error');
  });
});

describe('retry hints', () => {
  it('are read from retry-after-ms, retry-after seconds, or an HTTP date', () => {
    const now = Date.parse('2026-01-01T00:00:00Z');
    expect(retryAfterSeconds(new Headers({ 'retry-after-ms': '1500' }), now)).toBe(1.5);
    expect(retryAfterSeconds(new Headers({ 'retry-after': '7' }), now)).toBe(7);
    expect(retryAfterSeconds(new Headers({ 'retry-after': 'Thu, 01 Jan 2026 00:00:30 GMT' }), now)).toBe(30);
    expect(retryAfterSeconds(new Headers({ 'retry-after': 'soon' }), now)).toBeUndefined();
    expect(retryAfterSeconds(new Headers(), now)).toBeUndefined();
  });
});
