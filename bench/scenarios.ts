import { simulatedDeltas } from '../server/core/providers/simulated.ts';

// The scenarios of issue 6. Every figure can be changed with a flag (or BENCH_* variable); the
// defaults make a full run take well under 10 minutes on 2 cores.

export interface Scenario {
  readonly name: string;
  readonly title: string;
  /** Simulated users, each asking for one reply at a time. */
  readonly concurrency: number;
  /** Replies in total (the measured run). */
  readonly total: number;
  /** Replies before measuring, on the same server process (JIT, lazy modules, pools). */
  readonly warmup: number;
  /** SIM_DELAY_MS of the server under test. */
  readonly delayMs: number;
  /** The user message; the simulator echoes it into its reply, so its words add deltas. */
  readonly prompt: string;
  /** Measured runs per target; figures are their medians. */
  readonly repetitions: number;
  /** Spread the users' starts over this long (0: all at once). */
  readonly rampMs: number;
  readonly streamTimeoutMs: number;
  /**
   * When set, each repetition's replies are asked in turns of this many, target after target, so
   * that every target meets the machine's slow spells alike. Differences of a tenth of a
   * millisecond (time to first event at C=1) are otherwise lost in drift between whole runs.
   */
  readonly turnReplies?: number;
  /**
   * When set, each target is measured alone, right after its own warm-up, with its repetitions back
   * to back on that process, and its memory figures are those of its first run: a server left idle
   * while others run gives memory back, and its next run would count the regrowth as per-stream memory.
   */
  readonly alone?: boolean;
  /**
   * Only the targets that are compared with each other run (Sluice on its four transports and their
   * raw baselines; see Target.reference): the larger held concurrencies, which show where each bends.
   */
  readonly comparedOnly?: boolean;
  /** The proxy path's targets sit it out (the larger held concurrencies: their targets are at 1,000). */
  readonly noProxy?: boolean;
  /**
   * Every run opens its streams over new connections (a new client per run): a storm of connections,
   * not streams over the ones the warm-up or an earlier run left open.
   */
  readonly freshConnections?: boolean;
}

export const DEFAULT_PROMPT = 'explain caching';

const WORDS = ['cache', 'hit', 'miss', 'key', 'ttl', 'warm', 'cold', 'evict', 'lru', 'load', 'store', 'read'];

/** A prompt of `words` short words; the reply then has `words` + 37 deltas. */
export function longPrompt(words: number): string {
  return Array.from({ length: words }, (_, i) => WORDS[i % WORDS.length]).join(' ');
}

export function deltasOf(scenario: Scenario): number {
  return simulatedDeltas(scenario.prompt).length;
}

/** Time a reply takes at the scenario's pace, without any overhead. */
export function idealStreamMs(scenario: Scenario): number {
  return deltasOf(scenario) * scenario.delayMs;
}

export interface ScenarioSettings {
  readonly latencyStreams: number;
  readonly latencyTurn: number;
  readonly throughputConcurrency: number;
  readonly throughputStreams: number;
  readonly throughputReps: number;
  /** Replies per turn in the throughput scenario (0: each target's run in one go). */
  readonly throughputTurn: number;
  readonly heldConcurrency: readonly number[];
  readonly heldDelayMs: number;
  /** Runs of the smallest held concurrency (the keep-pace check); the larger ones run once. */
  readonly heldReps: number;
  /** Streams of the storm scenario, all started at once over new connections. */
  readonly stormConcurrency: number;
  readonly longWords: number;
  readonly longConcurrency: number;
  readonly longStreams: number;
  readonly rampMs: number;
}

export const DEFAULT_SETTINGS: ScenarioSettings = {
  latencyStreams: 300,
  latencyTurn: 5,
  throughputConcurrency: 50,
  throughputStreams: 1000,
  throughputReps: 7,
  throughputTurn: 250,
  heldConcurrency: [1000, 4000],
  heldDelayMs: 50,
  heldReps: 3,
  stormConcurrency: 1000,
  longWords: 2000,
  longConcurrency: 10,
  longStreams: 20,
  rampMs: 0,
};

export function buildScenarios(s: ScenarioSettings): Scenario[] {
  const base = { prompt: DEFAULT_PROMPT, rampMs: s.rampMs, streamTimeoutMs: 120_000 };
  return [
    {
      ...base,
      name: 'latency',
      title: `Latency: 1 user, ${s.latencyStreams} replies one after another, no token delay`,
      concurrency: 1,
      total: s.latencyStreams,
      // A long-running server answers with its code already optimised: 20 replies leave most of
      // Sluice's per-reply path unoptimised by V8 (and the JIT threads busy), which is not what users meet.
      warmup: 500,
      delayMs: 0,
      repetitions: 3,
      turnReplies: s.latencyTurn,
    },
    {
      ...base,
      name: 'throughput',
      title: `Throughput: ${s.throughputConcurrency} concurrent streams, ${s.throughputStreams} replies, no token delay`,
      concurrency: s.throughputConcurrency,
      total: s.throughputStreams,
      // As for latency: a short warm-up leaves the per-reply code of every server partly
      // unoptimised, and V8's compiler threads busy inside the measured window (their CPU counts as
      // the server's). The warm-up runs once per server; the repetitions measure the same process.
      warmup: 2000,
      delayMs: 0,
      repetitions: s.throughputReps,
      // A run of 1,000 replies takes a server 0.3-0.5 s, less than the machine's slow spells and its
      // drift after the warm-ups (the first run measured every server, raw ones included, at up to
      // 2.5x its later runs): in turns of 250 replies they touch every target alike.
      ...(s.throughputTurn > 0 ? { turnReplies: s.throughputTurn } : {}),
    },
    ...s.heldConcurrency.map((c) => {
      // A single run of 1,000 held streams moved its p99 by up to 1.5x between runs (one core busy
      // with 20,000 writes a second, the load generator on the other): the keep-pace check takes
      // the median of several. Larger concurrencies only show where each transport bends.
      const smallest = c === Math.min(...s.heldConcurrency);
      return {
        ...base,
        name: `held-${c}`,
        title: `Held streams: ${c} concurrent replies at ${s.heldDelayMs} ms a token, all opened at once`,
        concurrency: c,
        total: c,
        // One round of the warm-up's users (at most 50 at once).
        warmup: Math.min(50, c),
        delayMs: s.heldDelayMs,
        repetitions: smallest ? s.heldReps : 1,
        alone: true,
        ...(smallest ? {} : { comparedOnly: true, noProxy: true }),
      };
    }),
    {
      ...base,
      // The held scenarios' first run opens its streams over new connections too, but their later
      // runs reuse them (the SSE clients' keep-alive agents); a storm is new connections every time.
      name: 'storm',
      title: `Connection storm: ${s.stormConcurrency} streams started at once, each over a new connection, at ${s.heldDelayMs} ms a token`,
      concurrency: s.stormConcurrency,
      total: s.stormConcurrency,
      warmup: Math.min(50, s.stormConcurrency),
      delayMs: s.heldDelayMs,
      repetitions: s.heldReps,
      alone: true,
      comparedOnly: true,
      freshConnections: true,
    },
    {
      ...base,
      name: 'long',
      prompt: longPrompt(s.longWords),
      title: `Long reply: ${s.longWords + 37} tokens a reply, ${s.longConcurrency} concurrent, ${s.longStreams} replies, no token delay`,
      concurrency: s.longConcurrency,
      total: s.longStreams,
      warmup: 2,
      delayMs: 0,
      repetitions: 1,
    },
  ];
}
