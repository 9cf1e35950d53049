import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { startServer, type ChildServer } from './child-server.ts';
import { inProcessDriver, type LoadDriver, type LoadSpec } from './load.ts';
import { workerDriver } from './load-workers.ts';
import { processCpuMicros, processRssBytes, processTree, RssSampler } from './proc-stats.ts';
import type { Scenario } from './scenarios.ts';
import { simulatedDeltas } from '../server/core/providers/simulated.ts';
import { monotonicMicros, WINDOW_FILE, type ProfileWindow } from './profile-summary.ts';
import { percentile } from './stats.ts';
import type { StreamOutcome } from './stream-check.ts';
import { UPSTREAM_ENTRY, type Target } from './targets.ts';

// Measurements of one target: its server process, a warm-up, then runs of the scenario's load
// while the server's CPU time and resident memory are read from /proc.

export interface RunMetrics {
  readonly streams: number;
  readonly complete: number;
  readonly errors: number;
  /** Up to a few distinct failure reasons. */
  readonly errorSamples: readonly string[];
  /** Token deltas received (the `done` frames are not counted as events). */
  readonly events: number;
  readonly wallMs: number;
  readonly eventsPerSec: number;
  /** Server CPU (user + system) per delta event, in microseconds. */
  readonly serverCpuUsPerEvent: number;
  /** Server CPU time over the run, in milliseconds, and as a share of one core. */
  readonly serverCpuMs: number;
  /** The load generator's own CPU per event (to see when it, not the server, was the limit). */
  readonly clientCpuUsPerEvent: number;
  /** The load generator's CPU time over the run's wall time: near 1 (a whole core), it was the limit. */
  readonly clientCpuShare: number;
  /** CPU per event of the fake upstream behind a proxy target (its own process, not counted as the server's). */
  readonly upstreamCpuUsPerEvent?: number | undefined;
  readonly firstEventP50Ms: number | undefined;
  readonly firstEventP99Ms: number | undefined;
  readonly streamP50Ms: number | undefined;
  readonly streamP99Ms: number | undefined;
  /** Pacing: the median time from a stream's first event to its end (the ideal is the pace × (deltas − 1)). */
  readonly pacingP50Ms: number | undefined;
  /** The same at the 99th percentile: how far behind the pace the slowest streams fell. */
  readonly pacingP99Ms?: number | undefined;
  readonly idleRssMB: number;
  readonly peakRssMB: number;
  /** (peak − idle) / concurrency. */
  readonly memPerStreamKB: number;
}

export interface MeasureOptions {
  /** Extra environment for the server (on top of the scenario's). */
  readonly serverEnv?: Readonly<Record<string, string>>;
  /** Write the server's CPU profiles to `<cpuProfileDir>/<tag>/`. */
  readonly cpuProfileDir?: string;
  /** Tag for this run's ids and profile file. */
  readonly tag: string;
  /** Drive the load from this many worker threads (1: the load generator's own event loop). */
  readonly loadWorkers?: number;
}

/** Settings every server under test gets: the scenario's pace, and room for the long prompt. */
function serverEnv(scenario: Scenario): Record<string, string> {
  return {
    SIM_DELAY_MS: String(scenario.delayMs),
    // The model reports its usage, as an OpenAI-compatible upstream does when asked (Sluice asks by
    // default, and the proxy path's fake upstream answers): Sluice's own count, for providers that
    // report none, is not what a deployment pays on every reply (its cost is in the README).
    SIM_USAGE: 'true',
    // Production's level: the URL line is logged at info, and so is one line per finished reply.
    LOG_LEVEL: 'info',
    MAX_MESSAGE_CHARS: String(Math.max(32_000, scenario.prompt.length * 2)),
    MAX_BODY_BYTES: String(Math.max(65_536, scenario.prompt.length * 4 + 4096)),
  };
}

function plan(scenario: Scenario, tag: string, total: number, concurrency: number, offset = 0): LoadSpec {
  return {
    concurrency,
    total,
    rampMs: concurrency === scenario.concurrency ? scenario.rampMs : 0,
    prompt: scenario.prompt,
    expected: simulatedDeltas(scenario.prompt),
    timeoutMs: scenario.streamTimeoutMs,
    tag,
    offset,
    ...(scenario.freshConnections ? { freshConnections: true } : {}),
  };
}

/**
 * A measured stretch of load on one server: a whole run, or one turn of a run whose targets take
 * turns (see Scenario.turnReplies).
 */
export interface RunPiece {
  readonly outcomes: readonly StreamOutcome[];
  readonly wallMs: number;
  readonly serverCpuMicros: number;
  readonly clientCpuMicros: number;
  /** The fake upstream's CPU over the stretch (proxy targets only). */
  readonly upstreamCpuMicros: number | undefined;
  readonly idleRss: number;
  readonly peakRss: number;
  /** The stretch on the clock CPU profiles use. */
  readonly startUs: number;
  readonly endUs: number;
}

/** A target's server, started and warmed up, ready for measured runs. */
export interface OpenTarget {
  /** One measured run of the scenario's load on the warm server. */
  run(tag: string): Promise<RunMetrics>;
  /** `count` replies of a run, whose sessions are numbered from `offset`; `finish` makes a run of them. */
  piece(tag: string, offset: number, count: number): Promise<RunPiece>;
  /** The run made of these pieces (and the CPU profile's window, in profile mode). */
  finish(pieces: readonly RunPiece[]): Promise<RunMetrics>;
  close(): Promise<void>;
}

export type OpenResult = { readonly skipped: string } | { readonly open: OpenTarget };

/**
 * Starts the target's server and warms it up. Repetitions then measure the same warm process, as
 * users meet a long-running server; only its first replies pay for V8's compiling.
 */
export async function openTarget(target: Target, scenario: Scenario, options: MeasureOptions): Promise<OpenResult> {
  if (options.cpuProfileDir) await mkdir(join(options.cpuProfileDir, options.tag), { recursive: true });
  const targetEnv = (await target.env?.()) ?? {};
  if (typeof targetEnv === 'string') return { skipped: targetEnv };
  // A proxy target's upstream: its own process, at the scenario's pace, never profiled.
  let upstream: ChildServer | undefined;
  let server: ChildServer | undefined;
  let client: LoadDriver | undefined;
  const close = async (): Promise<void> => {
    await client?.close();
    await server?.stop();
    await upstream?.stop();
  };
  try {
    if (target.upstreamEnv) upstream = await startServer({ entry: UPSTREAM_ENTRY, env: serverEnv(scenario) });
    server = await startServer({
      entry: target.entry,
      env: { ...serverEnv(scenario), ...options.serverEnv, ...targetEnv, ...(upstream ? target.upstreamEnv?.(`${upstream.url}/v1`) : {}) },
      cpuProfileDir: options.cpuProfileDir && join(options.cpuProfileDir, options.tag),
    });
  } catch (error) {
    await close();
    throw error;
  }
  const started = server;
  try {
    const skip = await target.probe?.(started.url);
    if (skip) {
      await close();
      return { skipped: skip };
    }
    const workers = options.loadWorkers ?? 1;
    client = workers > 1 ? await workerDriver(target.name, started.url, workers) : inProcessDriver(() => target.client(started.url));
    if (scenario.warmup > 0) {
      await client.run(plan(scenario, `${options.tag}-w`, scenario.warmup, Math.min(scenario.concurrency, 50)));
    }
  } catch (error) {
    await close();
    throw error;
  }
  const warm = client;
  // Read once, after the warm-up: a server's processes (a cluster's workers) are all up by then,
  // and scanning /proc for every turn of a few replies would cost the load generator more than them.
  const members = processTree(started.pid);
  const profileDir = options.cpuProfileDir && join(options.cpuProfileDir, options.tag);
  const upstreamPid = upstream?.pid;
  const piece = (tag: string, offset: number, count: number): Promise<RunPiece> =>
    measurePiece(warm, started.pid, members, upstreamPid, plan(scenario, tag, count, scenario.concurrency, offset));
  const finish = async (pieces: readonly RunPiece[]): Promise<RunMetrics> => {
    const metrics = metricsOf(pieces, scenario.concurrency);
    if (profileDir && pieces.length > 0) {
      // The profile covers the server's whole life; its summary keeps the measured window only.
      const window: ProfileWindow = { startUs: pieces[0]!.startUs, endUs: pieces.at(-1)!.endUs, events: metrics.events };
      await writeFile(join(profileDir, WINDOW_FILE), JSON.stringify(window));
    }
    return metrics;
  };
  return {
    open: {
      run: async (tag) => finish([await piece(tag, 0, scenario.total)]),
      piece,
      finish,
      close,
    },
  };
}

async function measurePiece(client: LoadDriver, pid: number, members: readonly number[], upstreamPid: number | undefined, load: LoadSpec): Promise<RunPiece> {
  const idleRss = processRssBytes(pid, members);
  const startUs = monotonicMicros();
  const cpu0 = processCpuMicros(pid, members);
  const upstream0 = upstreamPid === undefined ? 0 : processCpuMicros(upstreamPid, [upstreamPid]);
  const client0 = process.cpuUsage();
  const sampler = new RssSampler(pid, members);
  const { outcomes, wallMs } = await client.run(load);
  const cpu1 = processCpuMicros(pid, members);
  const upstream1 = upstreamPid === undefined ? 0 : processCpuMicros(upstreamPid, [upstreamPid]);
  const clientCpu = process.cpuUsage(client0);
  const peakRss = sampler.stop();
  return {
    outcomes,
    wallMs,
    serverCpuMicros: cpu1 - cpu0,
    clientCpuMicros: clientCpu.user + clientCpu.system,
    upstreamCpuMicros: upstreamPid === undefined ? undefined : upstream1 - upstream0,
    idleRss,
    peakRss,
    startUs,
    endUs: monotonicMicros(),
  };
}

/** One run's figures from its pieces: their outcomes together, their times and CPU summed. */
function metricsOf(pieces: readonly RunPiece[], concurrency: number): RunMetrics {
  const outcomes = pieces.flatMap((p) => p.outcomes);
  const sum = (pick: (p: RunPiece) => number): number => pieces.reduce((n, p) => n + pick(p), 0);
  const wallMs = sum((p) => p.wallMs);
  const idleRss = pieces[0]?.idleRss ?? 0;
  const peakRss = Math.max(idleRss, ...pieces.map((p) => p.peakRss));
  const events = outcomes.reduce((n, o) => n + o.deltas, 0);
  const failed = outcomes.filter((o) => !o.complete);
  const firstEvents = outcomes.flatMap((o) => (o.firstEventMs === undefined ? [] : [o.firstEventMs]));
  const streamTimes = outcomes.filter((o) => o.complete).map((o) => o.streamMs);
  const pacing = outcomes.flatMap((o) => (o.complete && o.firstEventMs !== undefined ? [o.streamMs - o.firstEventMs] : []));
  const upstreamCpu = pieces.every((p) => p.upstreamCpuMicros !== undefined) ? sum((p) => p.upstreamCpuMicros ?? 0) : undefined;
  const perEvent = (micros: number): number => (events > 0 ? micros / events : Number.NaN);
  return {
    streams: outcomes.length,
    complete: outcomes.length - failed.length,
    errors: failed.length,
    errorSamples: [...new Set(failed.map((o) => o.error ?? 'incomplete'))].slice(0, 5),
    events,
    wallMs,
    eventsPerSec: (events * 1000) / wallMs,
    serverCpuUsPerEvent: perEvent(sum((p) => p.serverCpuMicros)),
    serverCpuMs: sum((p) => p.serverCpuMicros) / 1000,
    clientCpuUsPerEvent: perEvent(sum((p) => p.clientCpuMicros)),
    clientCpuShare: wallMs > 0 ? sum((p) => p.clientCpuMicros) / 1000 / wallMs : Number.NaN,
    ...(upstreamCpu === undefined ? {} : { upstreamCpuUsPerEvent: perEvent(upstreamCpu) }),
    firstEventP50Ms: percentile(firstEvents, 50),
    firstEventP99Ms: percentile(firstEvents, 99),
    streamP50Ms: percentile(streamTimes, 50),
    streamP99Ms: percentile(streamTimes, 99),
    pacingP50Ms: percentile(pacing, 50),
    pacingP99Ms: percentile(pacing, 99),
    idleRssMB: idleRss / 2 ** 20,
    peakRssMB: peakRss / 2 ** 20,
    memPerStreamKB: Math.max(0, peakRss - idleRss) / 1024 / concurrency,
  };
}
