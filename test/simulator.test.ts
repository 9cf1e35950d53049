import { getEventListeners } from 'node:events';
import { describe, expect, it } from 'vitest';
import { asDeltas } from '../server/core/providers/provider.ts';
import { createSimulatedProvider, simulatedDeltas } from '../server/core/providers/simulated.ts';
import type { ChatMessage } from '../shared/index.ts';
import { expectTimersBackTo, timerCount } from './helpers/server.ts';

const user = (content: string): ChatMessage => ({ role: 'user', content, status: 'complete', createdAt: new Date().toISOString() });

describe('simulated provider', () => {
  it('reproduces the documented template, one word and a space per delta', async () => {
    expect(simulatedDeltas('explain caching')).toHaveLength(39);
    expect(simulatedDeltas('explain caching').slice(0, 6)).toEqual(['Based ', 'on ', 'your ', 'query ', 'about ', "'explain "]);
    // Runs of whitespace split like Python's str.split().
    expect(simulatedDeltas('a \t\n b')).toHaveLength(39);
    expect(simulatedDeltas('x')).toHaveLength(38);
    const out: string[] = [];
    const provider = createSimulatedProvider({ delayMs: 0 });
    for await (const d of provider.stream({ messages: [user('hi there')], signal: new AbortController().signal })) out.push(...asDeltas(d));
    expect(out).toEqual(simulatedDeltas('hi there'));
  });

  it('waits SIM_FIRST_TOKEN_MS before its first token, then SIM_DELAY_MS between the others', async () => {
    const provider = createSimulatedProvider({ delayMs: 0, firstDelayMs: 150 });
    const at: number[] = [];
    const start = performance.now();
    for await (const _ of provider.stream({ messages: [user('slow start')], signal: new AbortController().signal })) at.push(performance.now() - start);
    expect(at[0]).toBeGreaterThanOrEqual(140);
    // The other 37 come without a delay.
    expect(at.at(-1)! - at[0]!).toBeLessThan(100);
    expect(() => createSimulatedProvider({ delayMs: 0, firstDelayMs: -1 })).toThrow(/firstDelayMs/);
  });

  it('with no first-token wait but a delay, paces every token after the first (none come in a burst)', async () => {
    const provider = createSimulatedProvider({ delayMs: 30, firstDelayMs: 0 });
    const at: number[] = [];
    const start = performance.now();
    for await (const item of provider.stream({ messages: [user('paced')], signal: new AbortController().signal })) {
      for (const _ of asDeltas(item)) at.push(performance.now() - start);
      if (at.length >= 4) break;
    }
    expect(at[0]).toBeLessThan(25);
    for (let i = 1; i < 4; i++) expect(at[i]! - at[i - 1]!).toBeGreaterThanOrEqual(25);
  });

  it('answers the last user message of the session', async () => {
    const provider = createSimulatedProvider({ delayMs: 0 });
    const out: string[] = [];
    const messages = [user('old'), { ...user('reply'), role: 'assistant' as const }, user('new')];
    for await (const d of provider.stream({ messages, signal: new AbortController().signal })) out.push(...asDeltas(d));
    expect(out.join('')).toContain("'new'");
  });

  it('stops promptly on abort and leaves no timer behind', async () => {
    const before = timerCount();
    const provider = createSimulatedProvider({ delayMs: 10_000 });
    const controller = new AbortController();
    const iterator = provider.stream({ messages: [user('x')], signal: controller.signal })[Symbol.asyncIterator]();
    const pending = iterator.next();
    setImmediate(() => controller.abort());
    const started = performance.now();
    await expect(pending).rejects.toThrow(/abort/i);
    expect(performance.now() - started).toBeLessThan(1000);
    await expectTimersBackTo(before);
  });

  it('paces with one timer and one abort listener a reply, and lets go of both however the reply ends', async () => {
    const before = timerCount();
    const provider = createSimulatedProvider({ delayMs: 1 });
    const whole = new AbortController();
    const out: string[] = [];
    for await (const d of provider.stream({ messages: [user('x')], signal: whole.signal })) {
      out.push(...asDeltas(d));
      expect(getEventListeners(whole.signal, 'abort')).toHaveLength(1);
    }
    expect(out).toEqual(simulatedDeltas('x'));
    expect(getEventListeners(whole.signal, 'abort')).toHaveLength(0);

    // A consumer that stops early (a client that left): return() ends the generator mid-pace.
    const early = new AbortController();
    const iterator = provider.stream({ messages: [user('x')], signal: early.signal })[Symbol.asyncIterator]();
    expect((await iterator.next()).value).toBe('Based ');
    await iterator.return?.(undefined);
    expect(getEventListeners(early.signal, 'abort')).toHaveLength(0);
    await expectTimersBackTo(before);
  });

  it('rejects a bad delay at construction', () => {
    expect(() => createSimulatedProvider({ delayMs: -1 })).toThrow(/delayMs must be a non-negative integer/);
  });
});
