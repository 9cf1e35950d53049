import { beforeAll, describe, expect, it } from 'vitest';
import { Generation } from '../server/core/generation.ts';
import type { Provider } from '../server/core/providers/provider.ts';
import { preloadTokenizer } from '../server/core/usage.ts';

// How a generation hands events to its listeners: the first one at once, later ones once per burst.
// Transports rely on it to write a burst of tokens in one frame batch instead of one write each.

/** Yields `perTurn` tokens back to back, then gives up the event loop, `turns` times. */
function burstyProvider(turns: number, perTurn: number): Provider {
  return {
    name: 'bursty',
    async *stream() {
      for (let t = 0; t < turns; t++) {
        if (t > 0) await new Promise((resolve) => setImmediate(resolve));
        for (let i = 0; i < perTurn; i++) yield `t${t}.${i} `;
      }
    },
  };
}

function newGeneration(): Generation {
  return new Generation({ id: 'g1', owner: 'o', sessionId: 's', sessionKey: 'o/s', resumeGraceMs: 0 });
}

describe('generation wake-ups', () => {
  // As the server does before it listens: a reply's usage is then counted within its last burst.
  beforeAll(() => preloadTokenizer());

  it('wakes a listener for the first token alone, then once per burst with the whole burst readable', async () => {
    const generation = newGeneration();
    const listener = generation.listen(0);
    const run = generation.run(burstyProvider(3, 8), [{ role: 'user', content: 'hi' }], async () => undefined);

    const batches: string[][] = [];
    for (let next = await listener.next(); !next.done; next = await listener.next()) {
      const batch = [next.value.event.type === 'delta' ? next.value.event.delta : next.value.event.type];
      for (let more = listener.poll(); more; more = listener.poll()) batch.push(more.event.type === 'delta' ? more.event.delta : more.event.type);
      batches.push(batch);
    }
    await run;

    expect(batches.flat()).toEqual([...Array.from({ length: 3 }, (_, t) => Array.from({ length: 8 }, (_, i) => `t${t}.${i} `)).flat(), 'done']);
    // First token alone; the rest of its turn together; then one batch per turn (the last with `done`).
    expect(batches.map((b) => b.length)).toEqual([1, 7, 8, 9]);
    expect(generation.listenerCount).toBe(0);
  });

  it('a waiter called back (onReady) gets the same batches as one awaiting next(), never before onReady returns', async () => {
    const generation = newGeneration();
    const listener = generation.listen(0);
    const run = generation.run(burstyProvider(3, 8), [{ role: 'user', content: 'hi' }], async () => undefined);

    const batches: string[][] = [];
    let early = 0;
    await new Promise<void>((resolve) => {
      const pump = (): void => {
        const batch: string[] = [];
        for (let more = listener.poll(); more; more = listener.poll()) batch.push(more.event.type === 'delta' ? more.event.delta : more.event.type);
        if (batch.length > 0) batches.push(batch);
        if (listener.over) return resolve();
        let returned = false;
        listener.onReady(() => {
          if (!returned) early++;
          pump();
        });
        returned = true;
      };
      pump();
    });
    await run;

    expect(early).toBe(0);
    expect(batches.map((b) => b.length)).toEqual([1, 7, 8, 9]);
    expect(generation.listenerCount).toBe(0);
  });

  it('closing a listener wakes its waiter, which finds it over', async () => {
    const generation = newGeneration();
    const listener = generation.listen(0);
    let woken = 0;
    listener.onReady(() => woken++);
    expect(() => listener.onReady(() => undefined)).toThrow(/one waiter/);
    expect(woken).toBe(0);
    listener.close();
    expect(woken).toBe(1);
    expect(listener.over).toBe(true);
    expect(listener.poll()).toBeUndefined();
  });

  it('a listener that joins a finished generation reads the whole log without waiting', async () => {
    const generation = newGeneration();
    const first = generation.listen(0);
    const run = generation.run(burstyProvider(2, 3), [{ role: 'user', content: 'hi' }], async () => undefined);
    for await (const event of first) void event;
    await run;

    const late = generation.listen(2);
    const seen: number[] = [];
    for (let event = late.poll(); event; event = late.poll()) seen.push(event.seq);
    expect(seen).toEqual([3, 4, 5, 6, 7]);
    expect(await late.next()).toEqual({ done: true, value: undefined });
  });
});
