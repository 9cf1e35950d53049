import type { StreamOutcome } from './stream-check.ts';
import type { LoadClient, StreamRequest } from './clients/types.ts';

// C simulated users ask for N replies in total, one at a time each, as fast as replies come back.
// All users start at once (with `rampMs`, spread evenly over it).

export interface LoadPlan {
  readonly concurrency: number;
  readonly total: number;
  /** Spread the users' starts over this many milliseconds (0: all at once). */
  readonly rampMs: number;
  /** The i-th stream's request. */
  request(i: number): StreamRequest;
}

export interface LoadResult {
  readonly outcomes: StreamOutcome[];
  /** Wall time from the first request to the last stream's end, in milliseconds. */
  readonly wallMs: number;
}

export async function runLoad(client: LoadClient, plan: LoadPlan): Promise<LoadResult> {
  const outcomes: StreamOutcome[] = [];
  let next = 0;
  const start = performance.now();
  let end = start;
  const users = Math.min(plan.concurrency, plan.total);
  const runUser = async (u: number): Promise<void> => {
    if (plan.rampMs > 0 && users > 1) {
      await new Promise((resolve) => setTimeout(resolve, (plan.rampMs * u) / (users - 1)));
    }
    const user = client.user();
    try {
      while (next < plan.total) {
        const i = next++;
        outcomes.push(await user.stream(plan.request(i)));
        end = performance.now();
      }
    } finally {
      await user.close();
    }
  };
  await Promise.all(Array.from({ length: users }, (_, u) => runUser(u)));
  return { outcomes, wallMs: end - start };
}
