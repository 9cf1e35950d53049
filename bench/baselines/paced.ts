import { setImmediate as nextTurn } from 'node:timers/promises';
import { Pacer } from '../../server/core/providers/pacer.ts';
import { simulatedDeltas } from '../../server/core/providers/simulated.ts';

// The baselines stream the simulator's own template with the simulator's own pacing: a delay before
// every token, or (without delay) a turn of the event loop every 16 tokens, as
// server/core/providers/simulated.ts does. Only the machinery around it differs.

const TURN_EVERY = 16;

export async function* pacedDeltas(prompt: string, delayMs: number, signal: AbortSignal): AsyncGenerator<string> {
  const deltas = simulatedDeltas(prompt);
  const pacer = delayMs > 0 ? new Pacer(signal) : undefined;
  try {
    for (let i = 0; i < deltas.length; i++) {
      if (pacer) await pacer.wait(delayMs);
      else if (i > 0 && i % TURN_EVERY === 0) await nextTurn(); // one turn is short: the check below is enough
      signal.throwIfAborted();
      yield deltas[i]!;
    }
  } finally {
    pacer?.close();
  }
}

let counter = 0;
/** A short unique id per reply, so that baseline frames carry `id:` lines like Sluice's. */
export function replyId(): string {
  counter = (counter + 1) % 0x7fffffff;
  return `${process.pid.toString(36)}${counter.toString(36).padStart(6, '0')}`;
}

/** SIM_DELAY_MS as Sluice reads it (default 50). */
export function delayFromEnv(): number {
  const raw = process.env.SIM_DELAY_MS;
  const value = raw === undefined || raw === '' ? 50 : Number(raw);
  if (!Number.isInteger(value) || value < 0) throw new RangeError(`SIM_DELAY_MS must be a non-negative integer, got ${raw}`);
  return value;
}
