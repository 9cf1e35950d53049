import type { StreamOutcome } from './stream-check.ts';
import type { LoadClient, StreamRequest } from './clients/types.ts';

// C simulated users ask for N replies in total, one at a time each, as fast as replies come back.
// All users start at once (with `rampMs`, spread evenly over it).

/** A stretch of load, as data (it crosses to the load workers, see load-workers.ts). */
export interface LoadSpec {
  readonly concurrency: number;
  readonly total: number;
  /** Spread the users' starts over this many milliseconds (0: all at once). */
  readonly rampMs: number;
  /** The user message of every reply, and the deltas it must bring. */
  readonly prompt: string;
  readonly expected: readonly string[];
  readonly timeoutMs: number;
  /** Reply i is a new conversation, `<tag>-<offset + i>`. */
  readonly tag: string;
  readonly offset: number;
  /** Run on a new client, closed after: every stream opens a new connection (the storm scenario). */
  readonly freshConnections?: boolean;
}

export interface LoadResult {
  readonly outcomes: StreamOutcome[];
  /** Wall time from the first request to the last stream's end, in milliseconds. */
  readonly wallMs: number;
}

function requestOf(spec: LoadSpec, i: number): StreamRequest {
  // A new conversation per reply: per-request work does not grow with a session's history.
  return { message: spec.prompt, sessionId: `${spec.tag}-${spec.offset + i}`, expected: spec.expected, timeoutMs: spec.timeoutMs };
}

export async function runLoad(client: LoadClient, spec: LoadSpec): Promise<LoadResult> {
  const outcomes: StreamOutcome[] = [];
  let next = 0;
  const start = performance.now();
  let end = start;
  const users = Math.min(spec.concurrency, spec.total);
  const runUser = async (u: number): Promise<void> => {
    if (spec.rampMs > 0 && users > 1) {
      await new Promise((resolve) => setTimeout(resolve, (spec.rampMs * u) / (users - 1)));
    }
    const user = client.user();
    try {
      while (next < spec.total) {
        const i = next++;
        outcomes.push(await user.stream(requestOf(spec, i)));
        end = performance.now();
      }
    } finally {
      await user.close();
    }
  };
  await Promise.all(Array.from({ length: users }, (_, u) => runUser(u)));
  return { outcomes, wallMs: end - start };
}

/**
 * The load of `spec` cut into `parts` (users and replies shared out as evenly as can be, each part
 * with its own range of conversations); parts without a user are left out.
 */
export function splitLoad(spec: LoadSpec, parts: number): LoadSpec[] {
  const users = Math.min(spec.concurrency, spec.total);
  const out: LoadSpec[] = [];
  let offset = spec.offset;
  let replies = 0;
  let usersSoFar = 0;
  for (let k = 0; k < parts; k++) {
    const u = Math.floor(users / parts) + (k < users % parts ? 1 : 0);
    if (u === 0) continue;
    usersSoFar += u;
    // Replies in proportion to users, the rounding settled so that they add up to the total.
    const upTo = Math.round((spec.total * usersSoFar) / users);
    const total = upTo - replies;
    out.push({ ...spec, concurrency: u, total, offset });
    offset += total;
    replies = upTo;
  }
  return out;
}

/** What drives a target's load: the load generator's own event loop, or several (load-workers.ts). */
export interface LoadDriver {
  run(spec: LoadSpec): Promise<LoadResult>;
  close(): Promise<void>;
}

/**
 * Runs a stretch of load on `client`, or on a new client from `makeClient` when the spec asks for
 * new connections (closed after it, so that nothing it opened is left for the next stretch).
 */
export async function runOn(client: LoadClient, makeClient: () => LoadClient, spec: LoadSpec): Promise<LoadResult> {
  if (!spec.freshConnections) return runLoad(client, spec);
  const fresh = makeClient();
  try {
    return await runLoad(fresh, spec);
  } finally {
    await fresh.close();
  }
}

export function inProcessDriver(makeClient: () => LoadClient): LoadDriver {
  const client = makeClient();
  return { run: (spec) => runOn(client, makeClient, spec), close: () => client.close() };
}
