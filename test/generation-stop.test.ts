import { getEventListeners } from 'node:events';
import { describe, expect, it } from 'vitest';
import { Generation } from '../server/core/generation.ts';
import type { Provider, ProviderRequest } from '../server/core/providers/provider.ts';
import { createSimulatedProvider } from '../server/core/providers/simulated.ts';

// Stopping a generation: its provider's signal is made only when the provider reads it, so a
// provider that never waits (the simulator without delay) costs no AbortSignal, and still stops.

function newGeneration(): Generation {
  return new Generation({ id: 'g1', owner: 'o', sessionId: 's', sessionKey: 'o/s', resumeGraceMs: 0 });
}

const hi = [{ role: 'user' as const, content: 'hi' }];

describe('stopping a generation', () => {
  it('stops a provider that never reads its signal after the token it is on', async () => {
    let pulled = 0;
    let closed = false;
    // eslint-disable-next-line prefer-const -- the provider below refers to it before it is made
    let generation: Generation;
    const provider: Provider = {
      name: 'counting',
      async *stream() {
        try {
          for (let i = 0; i < 1000; i++) {
            pulled++;
            if (i === 5) generation.stop('cancelled');
            yield `t${i} `;
          }
        } finally {
          closed = true;
        }
      },
    };
    generation = newGeneration();
    const listener = generation.listen(0);
    const summary = await generation.run(provider, hi, async () => undefined);
    for await (const event of listener) void event;

    expect(summary.outcome).toBe('cancelled');
    expect(summary.deltas).toBe(5);
    expect(pulled).toBe(6);
    expect(closed).toBe(true);
  });

  it('the simulator without delay stops when the generation does, and never asks for a signal', async () => {
    let asked = 0;
    const simulator = createSimulatedProvider({ delayMs: 0 });
    const provider: Provider = {
      name: 'watched',
      stream(request: ProviderRequest) {
        const watched = new Proxy(request, {
          get(target, key, receiver) {
            if (key === 'signal') asked++;
            return Reflect.get(target, key, receiver);
          },
        });
        return simulator.stream(watched);
      },
    };
    const generation = newGeneration();
    const listener = generation.listen(0);
    const run = generation.run(provider, [{ role: 'user', content: 'word '.repeat(200) }], async () => undefined);
    // The first event goes out at once; the reply is stopped before the rest of its 237 deltas.
    const first = await listener.next();
    expect(first.done).toBe(false);
    generation.stop('cancelled');
    const summary = await run;
    expect(summary.outcome).toBe('cancelled');
    expect(summary.deltas).toBeLessThan(237);
    expect(asked).toBe(0);
    listener.close();
  });

  it('a provider that reads its signal gets one that aborts on stop, and one already aborted after it', async () => {
    const signals: AbortSignal[] = [];
    const waiting: Provider = {
      name: 'waiting',
      async *stream(request) {
        signals.push(request.signal);
        yield 'a ';
        await new Promise((_, reject) => request.signal.addEventListener('abort', () => reject(request.signal.reason), { once: true }));
      },
    };
    const generation = newGeneration();
    const listener = generation.listen(0);
    const run = generation.run(waiting, hi, async () => undefined);
    await listener.next();
    expect(signals[0]!.aborted).toBe(false);
    generation.stop('cancelled');
    const summary = await run;
    expect(summary.outcome).toBe('cancelled');
    expect(summary.error).toBeUndefined();
    expect(signals[0]!.aborted).toBe(true);
    expect(getEventListeners(signals[0]!, 'abort')).toHaveLength(0);
    listener.close();

    const late = newGeneration();
    late.stop('cancelled');
    const lateRun = await late.run(
      {
        name: 'late',
        async *stream(request) {
          signals.push(request.signal);
          yield 'x';
        },
      },
      hi,
      async () => undefined,
    );
    expect(signals[1]!.aborted).toBe(true);
    expect(lateRun.outcome).toBe('cancelled');
  });
});
