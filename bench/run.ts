import os from 'node:os';
import { capacityTargets, runCapacity, type CapacityReport, type CapacitySettings } from './capacity.ts';
import { openTarget, type OpenTarget, type RunMetrics, type RunPiece } from './measure.ts';
import { machineInfo, type MachineInfo } from './machine.ts';
import { deltasOf, idealStreamMs, type Scenario } from './scenarios.ts';
import { median } from './stats.ts';
import { isProxyPath, targetByName, type TargetName } from './targets.ts';

// Runs every scenario on every target (baselines first, so each rep compares like with like in
// time), and keeps the medians of repeated runs. Each target runs on one server process per
// scenario, warmed up once.

export interface BenchOptions {
  readonly scenarios: readonly Scenario[];
  /** Also search for the streams each target keeps pace with on one process (after the scenarios). */
  readonly capacity?: CapacitySettings | undefined;
  readonly targets: readonly TargetName[];
  /** Run servers with --cpu-prof, writing profiles here. */
  readonly cpuProfileDir?: string;
  /**
   * Measure all targets at the same time (for the smoke test: quicker, but the servers then share
   * the CPU, so the figures mean nothing).
   */
  readonly concurrentTargets?: boolean;
  /** Drive each target's load from this many worker threads (default 1: the bench's own event loop). */
  readonly loadWorkers?: number;
  /** Progress lines (default: stderr). */
  readonly log?: (line: string) => void;
}

export interface TargetResult {
  readonly target: TargetName;
  readonly label: string;
  readonly sluice: boolean;
  readonly baselines: readonly TargetName[];
  /** Measured for reference only, not checked against a target of issue 6 (see Target.reference). */
  readonly reference: boolean;
  /** Why it was not measured (for instance a route that answers 404). */
  readonly skipped?: string;
  /** Medians over the repetitions (counts are summed). */
  readonly metrics?: RunMetrics;
  /** Every repetition's figures. */
  readonly runs: readonly RunMetrics[];
}

export interface ScenarioResult {
  readonly scenario: Scenario & { readonly deltasPerStream: number; readonly idealStreamMs: number };
  readonly results: readonly TargetResult[];
}

export interface BenchReport {
  readonly startedAt: string;
  /** 1-minute load average before and after the run: other work on the machine skews the figures. */
  readonly loadAverage: { readonly atStart: number; readonly atEnd: number };
  readonly durationS: number;
  /** Worker threads that drove each target's load (1: the bench's own event loop). */
  readonly loadWorkers?: number;
  readonly machine: MachineInfo;
  readonly scenarios: readonly ScenarioResult[];
  /** Streams per core, when asked for. */
  readonly capacity?: CapacityReport;
}

/** Medians of the runs; with `memoryOfFirst`, the memory figures of the first run (Scenario.alone). */
function aggregate(runs: readonly RunMetrics[], memoryOfFirst: boolean): RunMetrics {
  const m = (pick: (r: RunMetrics) => number | undefined): number => median(runs.map(pick)) ?? Number.NaN;
  const mo = (pick: (r: RunMetrics) => number | undefined): number | undefined => median(runs.map(pick));
  const sum = (pick: (r: RunMetrics) => number): number => runs.reduce((n, r) => n + pick(r), 0);
  return {
    streams: sum((r) => r.streams),
    complete: sum((r) => r.complete),
    errors: sum((r) => r.errors),
    errorSamples: [...new Set(runs.flatMap((r) => r.errorSamples))].slice(0, 5),
    events: sum((r) => r.events),
    wallMs: m((r) => r.wallMs),
    eventsPerSec: m((r) => r.eventsPerSec),
    serverCpuUsPerEvent: m((r) => r.serverCpuUsPerEvent),
    serverCpuMs: m((r) => r.serverCpuMs),
    clientCpuUsPerEvent: m((r) => r.clientCpuUsPerEvent),
    clientCpuShare: m((r) => r.clientCpuShare),
    ...(runs.some((r) => r.upstreamCpuUsPerEvent !== undefined) ? { upstreamCpuUsPerEvent: m((r) => r.upstreamCpuUsPerEvent) } : {}),
    firstEventP50Ms: mo((r) => r.firstEventP50Ms),
    firstEventP99Ms: mo((r) => r.firstEventP99Ms),
    streamP50Ms: mo((r) => r.streamP50Ms),
    streamP99Ms: mo((r) => r.streamP99Ms),
    pacingP50Ms: mo((r) => r.pacingP50Ms),
    pacingP99Ms: mo((r) => r.pacingP99Ms),
    ...(memoryOfFirst
      ? { idleRssMB: runs[0]!.idleRssMB, peakRssMB: runs[0]!.peakRssMB, memPerStreamKB: runs[0]!.memPerStreamKB }
      : { idleRssMB: m((r) => r.idleRssMB), peakRssMB: m((r) => r.peakRssMB), memPerStreamKB: m((r) => r.memPerStreamKB) }),
  };
}

const fmt = (v: number | undefined, digits = 1): string => (v === undefined || !Number.isFinite(v) ? '-' : v.toFixed(digits));

export async function runBench(options: BenchOptions): Promise<BenchReport> {
  const log = options.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  const started = Date.now();
  const loadAtStart = os.loadavg()[0]!;
  const targets = options.targets.map(targetByName);
  // Baselines first within each repetition.
  targets.sort((a, b) => Number(a.sluice) - Number(b.sluice));
  const scenarios: ScenarioResult[] = [];
  for (const scenario of options.scenarios) {
    log(`# ${scenario.name}: ${scenario.title}`);
    const here = targets.filter(
      (t) => (!t.scenarios || t.scenarios.test(scenario.name)) && !(scenario.comparedOnly && t.reference) && !(scenario.noProxy && isProxyPath(t)),
    );
    const runs = new Map<TargetName, RunMetrics[]>(here.map((t) => [t.name, []]));
    const skipped = new Map<TargetName, string>();
    const opened = new Map<TargetName, OpenTarget>();
    const open = async (target: (typeof targets)[number]): Promise<void> => {
      const result = await openTarget(target, scenario, {
        tag: `${scenario.name}-${target.name}`,
        cpuProfileDir: options.cpuProfileDir,
        ...(options.loadWorkers ? { loadWorkers: options.loadWorkers } : {}),
      });
      if ('skipped' in result) {
        skipped.set(target.name, result.skipped);
        log(`  ${target.name}: skipped: ${result.skipped}`);
      } else {
        opened.set(target.name, result.open);
      }
    };
    const record = (target: (typeof targets)[number], rep: number, r: RunMetrics): void => {
      runs.get(target.name)!.push(r);
      log(
        `  ${target.name.padEnd(16)} rep ${rep + 1}: ${fmt(r.eventsPerSec, 0)} ev/s, ${fmt(r.serverCpuUsPerEvent)} µs/ev server, ` +
          `first event p50 ${fmt(r.firstEventP50Ms, 2)} ms p99 ${fmt(r.firstEventP99Ms, 0)} ms, stream p99 ${fmt(r.streamP99Ms, 0)} ms, ${fmt(r.memPerStreamKB)} KB/stream, ` +
          `pacing p50 ${fmt(r.pacingP50Ms, 0)} ms, ` +
          (r.upstreamCpuUsPerEvent === undefined ? '' : `upstream ${fmt(r.upstreamCpuUsPerEvent)} µs/ev, `) +
          `load generator ${fmt(r.clientCpuUsPerEvent)} µs/ev (${fmt(r.clientCpuShare * 100, 0)}% of a core), ${r.complete}/${r.streams} complete` +
          (r.errors > 0 ? `, errors: ${r.errorSamples.join(' | ')}` : ''),
      );
    };
    const one = async (target: (typeof targets)[number], rep: number): Promise<void> => {
      const server = opened.get(target.name);
      if (server) record(target, rep, await server.run(`${scenario.name}-${target.name}-r${rep + 1}`));
    };
    // One repetition asked in turns of `turn` replies, target after target.
    const inTurns = async (turn: number, rep: number): Promise<void> => {
      const live = here.filter((t) => opened.has(t.name));
      const pieces = new Map<TargetName, RunPiece[]>(live.map((t) => [t.name, []]));
      for (let offset = 0; offset < scenario.total; offset += turn) {
        const count = Math.min(turn, scenario.total - offset);
        for (const t of live) pieces.get(t.name)!.push(await opened.get(t.name)!.piece(`${scenario.name}-${t.name}-r${rep + 1}`, offset, count));
      }
      for (const t of live) record(t, rep, await opened.get(t.name)!.finish(pieces.get(t.name)!));
    };
    const close = async (name: TargetName): Promise<void> => {
      const server = opened.get(name);
      opened.delete(name);
      await server?.close();
    };
    try {
      if (options.concurrentTargets) {
        await Promise.all(here.map(open));
        for (let rep = 0; rep < scenario.repetitions; rep++) await Promise.all(here.map((t) => one(t, rep)));
      } else if (scenario.alone || scenario.repetitions === 1) {
        // Measured right after its warm-up, alone: a process left idle while the others warm up
        // gives memory back, and memory per stream would then count its regrowth.
        for (const target of here) {
          await open(target);
          for (let rep = 0; rep < scenario.repetitions; rep++) await one(target, rep);
          await close(target.name);
        }
      } else {
        // Every target's server is started and warmed up first; the repetitions then take turns
        // across targets, so that a slow spell of the machine touches all of them alike.
        for (const target of here) await open(target);
        for (let rep = 0; rep < scenario.repetitions; rep++) {
          if (scenario.turnReplies) await inTurns(scenario.turnReplies, rep);
          else for (const target of here) await one(target, rep);
        }
      }
    } finally {
      await Promise.all([...opened.keys()].map(close));
    }
    scenarios.push({
      scenario: {
        ...scenario,
        prompt: scenario.prompt.length > 200 ? `${scenario.prompt.slice(0, 60)}… (${scenario.prompt.length} chars)` : scenario.prompt,
        deltasPerStream: deltasOf(scenario),
        idealStreamMs: idealStreamMs(scenario),
      },
      results: here.map((t) => {
        const list = runs.get(t.name)!;
        const skip = skipped.get(t.name);
        return {
          target: t.name,
          label: t.label,
          sluice: t.sluice,
          baselines: t.baselines,
          reference: t.reference ?? false,
          ...(skip ? { skipped: skip } : {}),
          ...(list.length > 0 ? { metrics: aggregate(list, scenario.alone ?? false) } : {}),
          runs: list,
        };
      }),
    });
  }
  const capacity = options.capacity
    ? await runCapacity(capacityTargets(options.targets), options.capacity, { log, ...(options.loadWorkers ? { loadWorkers: options.loadWorkers } : {}) })
    : undefined;
  return {
    startedAt: new Date(started).toISOString(),
    loadAverage: { atStart: Math.round(loadAtStart * 100) / 100, atEnd: Math.round(os.loadavg()[0]! * 100) / 100 },
    durationS: (Date.now() - started) / 1000,
    loadWorkers: options.loadWorkers ?? 1,
    machine: machineInfo(),
    scenarios,
    ...(capacity ? { capacity } : {}),
  };
}
