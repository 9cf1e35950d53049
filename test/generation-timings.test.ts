import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { Generation } from '../server/core/generation.ts';
import type { Provider } from '../server/core/providers/provider.ts';

// A generation's timings, which /metrics reports once per generation (time to first token, and the
// mean and longest gap between tokens) rather than once per token.

/** Yields the tokens, pausing `pauseMs` before each one that has a pause. */
function pacedProvider(tokens: ReadonlyArray<{ text: string; pauseMs?: number }>): Provider {
  return {
    name: 'paced',
    async *stream({ signal }) {
      for (const { text, pauseMs } of tokens) {
        if (pauseMs) await sleep(pauseMs, undefined, { signal });
        yield text;
      }
    },
  };
}

function run(provider: Provider, onFirstDelta?: (ms: number) => void) {
  const generation = new Generation({ id: 'g1', owner: 'o', sessionId: 's', sessionKey: 'o/s', resumeGraceMs: 0, onFirstDelta });
  const listener = generation.listen(0);
  const done = generation.run(provider, [{ role: 'user', content: 'hi' }], async () => undefined);
  return (async () => {
    for await (const event of listener) void event;
    return done;
  })();
}

describe('generation timings', () => {
  it('reports the first token when it comes, and the mean and longest gap between tokens at the end', async () => {
    const first: number[] = [];
    const summary = await run(pacedProvider([{ text: 'a', pauseMs: 10 }, { text: 'b', pauseMs: 40 }, { text: 'c' }, { text: 'd' }]), (ms) => first.push(ms));
    expect(first).toHaveLength(1);
    expect(first[0]).toBeGreaterThanOrEqual(9);
    expect(summary.firstDeltaMs).toBe(first[0]);
    // Gaps of about 40, 0 and 0 ms.
    expect(summary.deltaGapMs!.max).toBeGreaterThanOrEqual(39);
    expect(summary.deltaGapMs!.mean).toBeGreaterThan(summary.deltaGapMs!.max / 3 - 1);
    expect(summary.deltaGapMs!.mean).toBeLessThan(summary.deltaGapMs!.max / 3 + 1);
  });

  it('has no gaps for a reply of one token, nor a first token for an empty one', async () => {
    const one = await run(pacedProvider([{ text: 'only' }]));
    expect(one.firstDeltaMs).toBeDefined();
    expect(one.deltaGapMs).toBeUndefined();

    const first: number[] = [];
    const none = await run(pacedProvider([]), (ms) => first.push(ms));
    expect(none.firstDeltaMs).toBeUndefined();
    expect(none.deltaGapMs).toBeUndefined();
    expect(first).toEqual([]);
  });
});
