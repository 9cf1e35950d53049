import { describe, expect, it } from 'vitest';
import { Generation, type TrackedEvent } from '../server/core/generation.ts';
import type { Provider } from '../server/core/providers/provider.ts';
import { remoteListener } from '../server/core/remote-listener.ts';
import type { GenerationRecord } from '../server/core/store/event-log.ts';
import { drain } from '../server/transport/drain.ts';

// The drain loop and the Listener contract it waits through (onReady, over), with a real generation
// and a real remote listener over a store that answers what the test says.

/** Yields `tokens` in one turn, then waits until released. */
function heldProvider(tokens: string[]): { provider: Provider; release: () => void } {
  let release!: () => void;
  const gate = new Promise<void>((resolve) => (release = resolve));
  return {
    release,
    provider: {
      name: 'held',
      async *stream() {
        for (const token of tokens) yield token;
        await gate;
      },
    },
  };
}

const newGeneration = (id: string): Generation => new Generation({ id, owner: 'o', sessionId: 's', sessionKey: 'o/s', resumeGraceMs: 60_000 });
const turn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

describe('drain loop', () => {
  it.each([true, false])('a stream stopped while it waits for the reader (room after: %s) sends nothing more and ends at the wake', async (roomAfter) => {
    const generation = newGeneration('g1');
    const listener = generation.listen(0);
    const { provider, release } = heldProvider(['a', 'b', 'c']);
    const run = generation.run(provider, [{ role: 'user', content: 'hi' }], async () => undefined);
    await turn();
    const added: string[] = [];
    let full = true;
    let readyCalls = 0;
    let drained!: (room: boolean) => void;
    let closed = 0;
    const loop = drain({
      listener,
      transport: 'test',
      metrics: { streamOpened: () => undefined, streamClosed: () => void closed++ },
      // A WebSocket stays open after `subscription.stop`; its reader is full after one frame.
      outlet: {
        isOpen: () => true,
        room: () => 0,
        add: (event: TrackedEvent) => void added.push(event.event.type === 'delta' ? event.event.delta : event.event.type),
        flush: () => undefined,
      },
      sink: {
        hasRoom: () => !full,
        room: () => (full ? 0 : 1e6),
        ready: () => {
          readyCalls++;
          return new Promise<boolean>((resolve) => (drained = resolve));
        },
      },
    });
    await turn();
    listener.close();
    if (roomAfter) full = false;
    drained(true);
    await loop;
    expect({ added, readyCalls, closed }).toEqual({ added: ['a'], readyCalls: 1, closed: 1 });
    generation.stop('cancelled');
    release();
    await run;
  });

  it('a closed listener wakes a new waiter (not before onReady returns), as next() answers it at once', async () => {
    const listener = newGeneration('g2').listen(0);
    listener.close();
    expect(listener.over).toBe(true);
    expect(await listener.next()).toEqual({ done: true, value: undefined });
    let woken = 0;
    const wakes = new Promise<void>((resolve) => listener.onReady(() => (woken++, resolve())));
    expect(woken).toBe(0);
    await wakes;
    expect(woken).toBe(1);
  });

  it('a remote listener closed before any read is over, and a waiter on it is woken', async () => {
    const record = { id: 'r1', owner: 'o', sessionId: 's', sessionKey: 'o/s' } as unknown as GenerationRecord;
    const listener = remoteListener({
      record,
      afterSeq: 0,
      signal: undefined,
      pollMs: 1000,
      outageWaitMs: 1000,
      presenceTtlMs: 30_000,
      events: {
        read: (_id: string, _seq: number, _ms: number, signal?: AbortSignal) =>
          new Promise((resolve) => signal?.addEventListener('abort', () => resolve([]), { once: true })),
        touchListener: async () => undefined,
        dropListener: async () => undefined,
      },
      leases: { isAlive: async () => true },
      logger: { debug: () => undefined, warn: () => undefined },
    } as unknown as Parameters<typeof remoteListener>[0]);
    listener.close();
    expect(listener.over).toBe(true);
    await new Promise<void>((resolve) => listener.onReady(() => resolve()));
    expect(listener.poll()).toBeUndefined();
    expect(listener.over).toBe(true);
  });
});
