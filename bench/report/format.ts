import type { CapacityReport } from '../capacity.ts';
import type { RunMetrics } from '../measure.ts';
import type { ScenarioResult, TargetResult } from '../run.ts';
import { ratio } from '../stats.ts';

// Table rows shared by the console table and the markdown file: one row per target, each Sluice
// figure followed by its ratio to the main baseline measured in the same run.

export const COLUMNS = [
  'server',
  'events/s',
  'CPU µs/event',
  'first event p50 / p99 ms',
  'stream p50 / p99 ms',
  'pacing p50 ms',
  'peak RSS MB',
  'KB/stream',
  'complete',
  'load gen µs/event',
  'compared with',
] as const;

export function num(v: number | undefined, digits = 0): string {
  if (v === undefined || !Number.isFinite(v)) return '-';
  return v.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

const times = (r: number | undefined): string => (r === undefined || !Number.isFinite(r) ? '' : ` (${r.toFixed(2)}×)`);

function cell(value: number | undefined, base: number | undefined, digits: number, showRatio: boolean): string {
  return num(value, digits) + (showRatio ? times(ratio(value, base)) : '');
}

function digitsFor(v: number | undefined): number {
  return v !== undefined && v < 10 ? 1 : 0;
}

export function findResult(s: ScenarioResult, name: string): TargetResult | undefined {
  return s.results.find((r) => r.target === name);
}

/**
 * Memory per stream means something only when the streams are held open together (paced
 * scenarios); without delay it is mostly garbage not yet collected, so the tables leave it out.
 */
export function showsMemoryPerStream(s: ScenarioResult): boolean {
  return s.scenario.delayMs > 0;
}

export function rowsOf(s: ScenarioResult): string[][] {
  const memory = showsMemoryPerStream(s);
  return s.results.map((r) => {
    if (!r.metrics) return [r.label, ...COLUMNS.slice(1, -1).map(() => '-'), r.skipped ? `skipped: ${r.skipped}` : 'no result'];
    const m = r.metrics;
    // The first baseline measured in this scenario (the reference ones sit out the larger held runs).
    const mainName = r.baselines.find((name) => findResult(s, name)?.metrics);
    const main = mainName ? findResult(s, mainName)?.metrics : undefined;
    const show = main !== undefined;
    const b = (pick: (x: RunMetrics) => number | undefined): number | undefined => (main ? pick(main) : undefined);
    const pair = (p50: number | undefined, p99: number | undefined, b50: number | undefined, b99: number | undefined): string =>
      `${cell(p50, b50, digitsFor(p50), show)} / ${cell(p99, b99, digitsFor(p99), show)}`;
    const compared: string[] = [];
    if (mainName) compared.push(mainName);
    for (const other of r.baselines.filter((name) => name !== mainName)) {
      const om = findResult(s, other)?.metrics;
      const cr = ratio(m.serverCpuUsPerEvent, om?.serverCpuUsPerEvent);
      if (cr !== undefined) compared.push(`CPU ${cr.toFixed(2)}× ${other}`);
    }
    return [
      r.label,
      cell(
        m.eventsPerSec,
        b((x) => x.eventsPerSec),
        0,
        show,
      ),
      cell(
        m.serverCpuUsPerEvent,
        b((x) => x.serverCpuUsPerEvent),
        1,
        show,
      ),
      pair(
        m.firstEventP50Ms,
        m.firstEventP99Ms,
        b((x) => x.firstEventP50Ms),
        b((x) => x.firstEventP99Ms),
      ),
      pair(
        m.streamP50Ms,
        m.streamP99Ms,
        b((x) => x.streamP50Ms),
        b((x) => x.streamP99Ms),
      ),
      memory
        ? cell(
            m.pacingP50Ms,
            b((x) => x.pacingP50Ms),
            0,
            show,
          )
        : '-',
      num(m.peakRssMB, 0),
      memory
        ? cell(
            m.memPerStreamKB,
            b((x) => x.memPerStreamKB),
            1,
            show,
          )
        : '-',
      `${m.complete}/${m.streams}${m.errors > 0 ? ` (${m.errorSamples[0] ?? 'errors'})` : ''}`,
      // The load generator's CPU (and its share of a core: near 100% it, not the server, set the pace).
      `${num(m.clientCpuUsPerEvent, 1)} (${num((m.clientCpuShare ?? Number.NaN) * 100, 0)}%)`,
      compared.join('; '),
    ];
  });
}

export function scenarioHeading(s: ScenarioResult): string {
  const sc = s.scenario;
  const parts = [`${sc.deltasPerStream} deltas a reply`, `SIM_DELAY_MS=${sc.delayMs}`];
  if (sc.delayMs > 0) parts.push(`ideal stream time ${num(sc.idealStreamMs)} ms`);
  if (sc.repetitions === 1) parts.push('one run');
  else if (sc.alone) parts.push(`medians of ${sc.repetitions} runs back to back on each server, memory from the first`);
  else parts.push(`medians of ${sc.repetitions} runs`);
  if (sc.comparedOnly) parts.push('the reference baselines and the Redis store left out');
  if (sc.turnReplies) parts.push(`the servers take turns every ${sc.turnReplies} replies`);
  return `${sc.title} (${parts.join(', ')})`;
}

// The targets of issue 6, part 2, checked against this run's figures.

export interface TargetCheck {
  readonly goal: string;
  readonly measured: string;
  readonly met: boolean | undefined;
}

function check(goal: string, value: number | undefined, limit: number, unit = '×'): TargetCheck {
  return {
    goal,
    measured: value === undefined || !Number.isFinite(value) ? 'not measured' : `${value.toFixed(2)}${unit}`,
    met: value === undefined || !Number.isFinite(value) ? undefined : value <= limit,
  };
}

export function targetChecks(scenarios: readonly ScenarioResult[]): TargetCheck[] {
  const checks: TargetCheck[] = [];
  const get = (scenario: string, target: string): RunMetrics | undefined =>
    scenarios.find((s) => s.scenario.name === scenario)?.results.find((r) => r.target === target)?.metrics;
  const cpu = (scenario: string, a: string, b: string): number | undefined =>
    ratio(get(scenario, a)?.serverCpuUsPerEvent, get(scenario, b)?.serverCpuUsPerEvent);
  if (scenarios.some((s) => s.scenario.name === 'throughput')) {
    checks.push(check('SSE route: CPU/event ≤ 1.3× raw SSE', cpu('throughput', 'sluice-sse', 'raw-sse'), 1.3));
    checks.push(check('tRPC WS: CPU/event ≤ 1.2× minimal tRPC WS', cpu('throughput', 'sluice-trpc-ws', 'trpc-ws-min'), 1.2));
    checks.push(check('tRPC SSE: CPU/event ≤ 2× raw SSE', cpu('throughput', 'sluice-trpc-sse', 'raw-sse'), 2));
  }
  // Held streams: each transport against a raw writer of its wire. tRPC is held against the raw
  // writers of tRPC's wires, read by the same stock clients: those clients (wsLink with a socket per
  // user; EventSource, then the tRPC link) cost the load generator far more than the hand-written
  // ones do, and on two cores the load generator shares the machine with the server.
  const raw = (t: string): string => (t === 'sluice-trpc-ws' ? 'raw-trpc-ws' : t === 'sluice-trpc-sse' ? 'raw-trpc-sse' : 'raw-sse');
  // The keep-pace target is at 1,000; the larger concurrencies (comparedOnly) show where each bends.
  for (const s of scenarios.filter((x) => x.scenario.name.startsWith('held-') && !x.scenario.comparedOnly)) {
    const c = s.scenario.concurrency;
    // The Redis-store rows are reference figures: the targets are per transport, on the default store.
    // The proxy rows have targets of their own (proxyChecks).
    for (const r of s.results.filter((x) => x.sluice && !x.reference && x.metrics && !PROXY_TARGETS.includes(x.target))) {
      // "Ideal plus connection setup" is what the raw baseline achieves in the same run.
      const base = get(s.scenario.name, raw(r.target))?.streamP99Ms;
      const p99 = ratio(r.metrics!.streamP99Ms, base);
      const detail = ` (${num(r.metrics!.streamP99Ms)} vs ${num(base)} ms; ideal ${num(s.scenario.idealStreamMs)})`;
      const c99 = check(`${r.label}, ${c} held streams: stream p99 ≤ 1.3× ${raw(r.target)}'s`, p99, 1.3);
      checks.push({ ...c99, measured: c99.measured + (c99.met === undefined ? '' : detail) });
      checks.push(check(`${r.label}, ${c} held streams: ≤ 50 KB a stream`, r.metrics!.memPerStreamKB, 50, ' KB'));
    }
  }
  if (scenarios.some((s) => s.scenario.name === 'latency')) {
    for (const [t, b] of [
      ['sluice-sse', 'raw-sse'],
      ['sluice-trpc-ws', 'raw-trpc-ws'],
      ['sluice-trpc-sse', 'raw-trpc-sse'],
      ['sluice-openai', 'raw-sse'],
    ] as const) {
      const value = ratio(get('latency', t)?.firstEventP50Ms, get('latency', b)?.firstEventP50Ms);
      if (value !== undefined) checks.push(check(`${t}: first event p50 at C=1 ≤ 1.2× ${b}`, value, 1.2));
    }
  }
  return checks;
}

// The targets of the proxy path: Sluice with LLM_PROVIDER=openai in front of the fake upstream,
// against that upstream serving the same load directly (the floor), in the same run.

const PROXY_TARGETS: readonly string[] = ['sluice-proxy-openai', 'sluice-proxy-sse', 'sluice-proxy-trpc-ws'];
const UPSTREAM = 'openai-upstream';

export function proxyChecks(scenarios: readonly ScenarioResult[]): TargetCheck[] {
  const checks: TargetCheck[] = [];
  const floorOf = (s: ScenarioResult): RunMetrics | undefined => findResult(s, UPSTREAM)?.metrics;
  const proxies = (s: ScenarioResult): TargetResult[] => s.results.filter((r) => PROXY_TARGETS.includes(r.target) && r.metrics);
  const throughput = scenarios.find((s) => s.scenario.name === 'throughput');
  if (throughput) {
    const floor = floorOf(throughput);
    for (const r of proxies(throughput)) {
      checks.push(
        check(
          `${r.label}, ${throughput.scenario.concurrency} streams, no delay: CPU/event ≤ 2.5× the upstream's`,
          ratio(r.metrics!.serverCpuUsPerEvent, floor?.serverCpuUsPerEvent),
          2.5,
        ),
      );
    }
  }
  for (const s of scenarios.filter((x) => x.scenario.name.startsWith('held-') && !x.scenario.comparedOnly)) {
    const floor = floorOf(s);
    const c = s.scenario.concurrency;
    for (const r of proxies(s)) {
      const m = r.metrics!;
      checks.push(check(`${r.label}, ${c} held streams: CPU/event ≤ 2.5× the upstream's`, ratio(m.serverCpuUsPerEvent, floor?.serverCpuUsPerEvent), 2.5));
      checks.push(check(`${r.label}, ${c} held streams: memory a stream ≤ 2.5× the upstream's`, ratio(m.memPerStreamKB, floor?.memPerStreamKB), 2.5));
      checks.push(check(`${r.label}, ${c} held streams: first event p99 ≤ 2× the upstream's`, ratio(m.firstEventP99Ms, floor?.firstEventP99Ms), 2));
      checks.push(
        check(`${r.label}, ${c} held streams: pacing (first event to end, p50) ≤ 1.1× the upstream's`, ratio(m.pacingP50Ms, floor?.pacingP50Ms), 1.1),
      );
    }
  }
  return checks;
}

// The targets of issue 20: held streams at the larger concurrency (4,000) against the raw writer of
// each wire, connection storms, and the Redis store against the memory store.

/** The raw writer each Sluice target is held to: of its own wire, or the upstream for the proxy path. */
function rawOf(target: string): string {
  if (PROXY_TARGETS.includes(target)) return UPSTREAM;
  return target === 'sluice-trpc-ws' ? 'raw-trpc-ws' : target === 'sluice-trpc-sse' ? 'raw-trpc-sse' : 'raw-sse';
}

export function scaleChecks(scenarios: readonly ScenarioResult[]): TargetCheck[] {
  const checks: TargetCheck[] = [];
  const compared = (s: ScenarioResult): TargetResult[] => s.results.filter((r) => r.sluice && !r.reference && r.metrics);
  for (const s of scenarios.filter((x) => x.scenario.name.startsWith('held-') && x.scenario.comparedOnly)) {
    const c = s.scenario.concurrency;
    for (const r of compared(s)) {
      const base = findResult(s, rawOf(r.target))?.metrics;
      const m = r.metrics!;
      const vs = `${rawOf(r.target)}'s`;
      checks.push(check(`${r.label}, ${c} held streams: CPU/event ≤ 1.2× ${vs}`, ratio(m.serverCpuUsPerEvent, base?.serverCpuUsPerEvent), 1.2));
      checks.push(check(`${r.label}, ${c} held streams: memory a stream ≤ 1.2× ${vs}`, ratio(m.memPerStreamKB, base?.memPerStreamKB), 1.2));
      checks.push(check(`${r.label}, ${c} held streams: pacing p50 ≤ 1.1× ${vs}`, ratio(m.pacingP50Ms, base?.pacingP50Ms), 1.1));
    }
  }
  const storm = scenarios.find((x) => x.scenario.name === 'storm');
  if (storm) {
    for (const r of compared(storm)) {
      const base = findResult(storm, rawOf(r.target))?.metrics;
      const value = ratio(r.metrics!.firstEventP99Ms, base?.firstEventP99Ms);
      const c = check(`${r.label}, storm of ${storm.scenario.concurrency}: first event p99 ≤ 2× ${rawOf(r.target)}'s`, value, 2);
      const detail = c.met === undefined ? '' : ` (${num(r.metrics!.firstEventP99Ms)} vs ${num(base?.firstEventP99Ms)} ms)`;
      checks.push({ ...c, measured: c.measured + detail });
    }
  }
  // The Redis store is held to the memory store (history and the event log in the process) at the keep-pace concurrency.
  for (const s of scenarios.filter((x) => x.scenario.name.startsWith('held-') && !x.scenario.comparedOnly)) {
    const redis = findResult(s, 'sluice-sse-redis')?.metrics;
    const memory = findResult(s, 'sluice-sse-memory')?.metrics;
    if (redis || memory) {
      checks.push(
        check(
          `SSE route on Redis, ${s.scenario.concurrency} held streams: CPU/event ≤ 1.5× STORE=memory's`,
          ratio(redis?.serverCpuUsPerEvent, memory?.serverCpuUsPerEvent),
          1.5,
        ),
      );
    }
  }
  return checks;
}

export const CAPACITY_COLUMNS = [
  'server',
  'largest C that keeps pace',
  'first C that does not',
  'why',
  'server CPU at largest',
  'load gen at largest',
  'tries',
] as const;

/** One row per target of the streams-per-core search. */
export function capacityRows(report: CapacityReport): string[][] {
  return report.results.map((r) => {
    if (r.skipped) return [r.label, '-', '-', `skipped: ${r.skipped}`, '-', '-', '0'];
    const best = r.probes.find((p) => p.concurrency === r.largest)?.metrics;
    const miss = r.probes.find((p) => p.concurrency === r.firstMissed);
    const share = (v: number | undefined): string => (v === undefined || !Number.isFinite(v) ? '-' : `${Math.round(v * 100)}% of a core`);
    return [
      r.label,
      r.largest === undefined ? `< ${num(r.probes[0]?.concurrency)}` : `${num(r.largest)}${r.capped ? ` (or more: ${r.capped})` : ''}`,
      r.firstMissed === undefined ? '-' : num(r.firstMissed),
      miss?.why ?? '',
      share(best ? best.serverCpuMs / best.wallMs : undefined),
      share(best?.clientCpuShare),
      r.probes.map((p) => `${num(p.concurrency)}${p.keepsPace ? '✓' : '✗'}`).join(' '),
    ];
  });
}

export function capacityHeading(report: CapacityReport): string {
  return (
    `Streams per core: the largest number of held streams one server process keeps pace with, at ${report.delayMs} ms a token ` +
    `(every stream complete, and 99% of them from first event to end within ${report.paceSlack}× the model's ${num(report.idealPacingMs)} ms), ` +
    `found to within ${report.step} streams; each try a fresh server, warmed up, its streams opened at once; the load generator on the same machine`
  );
}
