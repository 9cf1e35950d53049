import type { Provider, ProviderYield } from '../../server/core/providers/provider.ts';
import { createSimulatedProvider } from '../../server/core/providers/simulated.ts';

// The baselines stream through Sluice's own simulator: the same template, at the same pace (a delay
// before every token, or without delay a turn of the event loop every 16 tokens). Only the
// machinery around it differs. Unpaced, it yields the deltas of a turn together, which each
// baseline writes one by one as before (as Sluice does).

const providers = new Map<number, Provider>();

export function pacedDeltas(prompt: string, delayMs: number, signal: AbortSignal): AsyncIterable<ProviderYield> {
  let provider = providers.get(delayMs);
  if (!provider) providers.set(delayMs, (provider = createSimulatedProvider({ delayMs })));
  return provider.stream({ messages: [{ role: 'user', content: prompt }], signal });
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
