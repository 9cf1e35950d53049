import { afterEach, describe, expect, it, vi } from 'vitest';
import { createOpenAIProvider, type OpenAIProviderOptions } from '../server/core/providers/openai.ts';
import { asDeltas, type Provider } from '../server/core/providers/provider.ts';
import { DEFAULT_TOKENS, startFakeUpstream, type FakeUpstream } from './helpers/fake-upstream.ts';

// The provider's connections to its upstream: kept alive between replies, bounded by
// maxConnections, closed when a reply is left, and let go of by close().

const REPLY = DEFAULT_TOKENS.join('');
const providers: Provider[] = [];
afterEach(async () => {
  for (const provider of providers.splice(0)) await provider.close?.();
});

function providerFor(upstream: FakeUpstream, options: Partial<OpenAIProviderOptions> = {}): Provider {
  const provider = createOpenAIProvider({
    baseURL: upstream.baseURL,
    model: 'fake-model',
    includeUsage: true,
    firstTokenTimeoutMs: 5000,
    stallTimeoutMs: 5000,
    retries: 0,
    retryBaseMs: 10,
    retryMaxDelayMs: 1000,
    ...options,
  });
  providers.push(provider);
  return provider;
}

async function reply(provider: Provider, onDelta?: (delta: string) => unknown): Promise<string> {
  let text = '';
  for await (const delta of provider.stream({ messages: [{ role: 'user', content: 'hello' }], signal: new AbortController().signal })) {
    for (const d of asDeltas(delta)) {
      text += d;
      onDelta?.(d);
    }
  }
  return text;
}

describe('upstream connections', () => {
  it('are kept alive: replies one after another go over one connection', async () => {
    const upstream = await startFakeUpstream();
    const provider = providerFor(upstream);
    for (let i = 0; i < 3; i++) {
      expect(await reply(provider)).toBe(REPLY);
      // undici lets a connection serve again a turn of the event loop after its response ended
      // (a server that said keep-alive may still close it); a reply asked for in the same turn
      // opens another connection.
      await new Promise((resolve) => setImmediate(resolve));
    }
    expect(upstream.requests).toHaveLength(3);
    expect(new Set(upstream.requests.map((r) => r.remotePort)).size).toBe(1);
    expect(upstream.requests.every((r) => !r.abortedByClient)).toBe(true);
    expect(upstream.connections).toBe(1);
  });

  it('are bounded by maxConnections: a reply waits for a free one, then reuses it', async () => {
    const upstream = await startFakeUpstream({ kind: 'ok', delayMs: 20 });
    const provider = providerFor(upstream, { maxConnections: 1 });
    let second: Promise<string> | undefined;
    // The second reply is asked for while the first streams.
    const first = reply(provider, () => (second ??= reply(provider)));
    expect(await first).toBe(REPLY);
    await vi.waitFor(() => expect(second).toBeDefined());
    expect(await second).toBe(REPLY);
    const [a, b] = upstream.requests;
    expect(b!.receivedAt).toBeGreaterThanOrEqual(a!.closedAt!);
    expect(b!.remotePort).toBe(a!.remotePort);
    expect(upstream.connections).toBe(1);
  });

  it('when all are busy, a reply waits for one within its first-token timeout, and is never sent once it gave up', async () => {
    // The first reply holds the only connection for ten tokens 100 ms apart; its own first token
    // comes well within the limit.
    const upstream = await startFakeUpstream({ kind: 'ok', delayMs: 100, tokens: Array.from({ length: 10 }, (_, i) => `t${i} `) });
    const provider = providerFor(upstream, { maxConnections: 1, firstTokenTimeoutMs: 400 });
    let second: Promise<unknown> | undefined;
    const first = reply(provider, () => {
      second ??= reply(provider).then(
        () => 'streamed',
        (error: unknown) => error,
      );
    });
    await expect(first).resolves.toHaveLength(30);
    expect(await second).toMatchObject({ code: 'upstream_timeout' });
    // Once the connection is free again (a turn later, see above), the request given up on is dropped, not sent.
    await new Promise((resolve) => setImmediate(resolve));
    await new Promise((resolve) => setImmediate(resolve));
    expect(await reply(provider)).toHaveLength(30);
    expect(upstream.requests).toHaveLength(2);
  });

  it('of a reply left mid-stream are closed, and the next reply opens a new one', async () => {
    const upstream = await startFakeUpstream({ kind: 'ok', delayMs: 20 });
    const provider = providerFor(upstream);
    for await (const _ of provider.stream({ messages: [{ role: 'user', content: 'hi' }], signal: new AbortController().signal })) break;
    await vi.waitFor(() => expect(upstream.requests[0]!.closedAt).toBeDefined());
    expect(upstream.requests[0]!.abortedByClient).toBe(true);
    expect(await reply(provider)).toBe(REPLY);
    expect(upstream.requests[1]!.remotePort).not.toBe(upstream.requests[0]!.remotePort);
  });

  it('of a reply read slower than the upstream sends are paused and resumed: every delta arrives, in order, and the connection is kept', async () => {
    // Thousands of tokens at once, read a turn of the event loop apart: far more than the call
    // queues before it pauses the socket.
    const tokens = Array.from({ length: 5000 }, (_, i) => `t${i} `);
    const upstream = await startFakeUpstream({ kind: 'ok', tokens });
    const provider = providerFor(upstream);
    const seen: string[] = [];
    for await (const delta of provider.stream({ messages: [{ role: 'user', content: 'hi' }], signal: new AbortController().signal })) {
      seen.push(...asDeltas(delta));
      await new Promise((resolve) => setImmediate(resolve));
    }
    expect(seen).toEqual(tokens);
    await new Promise((resolve) => setImmediate(resolve));
    expect(await reply(provider)).toBe(tokens.join(''));
    expect(upstream.requests[1]!.remotePort).toBe(upstream.requests[0]!.remotePort);
    expect(upstream.requests.every((r) => !r.abortedByClient)).toBe(true);
  });

  it('are let go of by close(), which leaves a running reply to finish', async () => {
    const upstream = await startFakeUpstream({ kind: 'ok', delayMs: 20 });
    const provider = providerFor(upstream);
    let closing: Promise<void> | undefined;
    const text = await reply(provider, () => (closing ??= provider.close!()));
    expect(text).toBe(REPLY);
    await closing;
    expect(upstream.requests[0]!.abortedByClient).toBe(false);
    await vi.waitFor(() => expect(upstream.connections).toBe(0));
  });

  it('options are validated at construction', () => {
    const base = {
      baseURL: 'http://127.0.0.1:1/v1',
      model: 'm',
      includeUsage: true,
      firstTokenTimeoutMs: 0,
      stallTimeoutMs: 0,
      retries: 0,
      retryBaseMs: 1,
      retryMaxDelayMs: 0,
    };
    expect(() => createOpenAIProvider({ ...base, maxConnections: 0 })).toThrow(/maxConnections must be an integer from 1 to 65535, got 0/);
    expect(() => createOpenAIProvider({ ...base, maxConnections: 1.5 })).toThrow(/maxConnections/);
    expect(() => createOpenAIProvider({ ...base, keepAliveMs: 0 })).toThrow(/keepAliveMs must be an integer from 1 to 600000, got 0/);
  });
});
