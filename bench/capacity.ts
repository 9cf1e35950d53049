import { openTarget, type RunMetrics } from './measure.ts';
import { openFilesLimit } from './proc-stats.ts';
import { DEFAULT_PROMPT, deltasOf, type Scenario } from './scenarios.ts';
import { isProxyPath, targetByName, type TargetName } from './targets.ts';

// Streams per core: the largest number of held streams one server process keeps pace with. Each
// try is a fresh server, warmed up, then C streams at the model's pace opened at once; C doubles
// from `start` until a try falls behind, then the search halves the gap between the last try that
// kept pace and the first that did not, down to `step` streams.

export interface CapacitySettings {
  /** The first concurrency tried. */
  readonly start: number;
  /** The most tried (the open-files limit may lower it). */
  readonly max: number;
  /** The search stops once it knows the largest C to within this many streams. */
  readonly step: number;
  readonly delayMs: number;
}

export const DEFAULT_CAPACITY = { start: 1000, max: 16_000, step: 250 } as const;

/**
 * Keeping pace: every stream complete, and 99% of them from their first event to their end within
 * this much of the model's own time for the reply (the pace × the deltas after the first). The time
 * to the first event is left out: opening C connections at once is the storm scenario's question.
 */
export const PACE_SLACK = 1.2;

export interface CapacityProbe {
  readonly concurrency: number;
  readonly keepsPace: boolean;
  /** Why it did not keep pace. */
  readonly why?: string;
  readonly metrics: RunMetrics;
}

export interface CapacityResult {
  readonly target: TargetName;
  readonly label: string;
  readonly sluice: boolean;
  /** The largest concurrency that kept pace (undefined: not even the first try did). */
  readonly largest: number | undefined;
  /** The smallest that did not (undefined: every try kept pace). */
  readonly firstMissed: number | undefined;
  /** Why the search stopped before finding one that did not keep pace (the open-files limit, --capacity-max). */
  readonly capped?: string;
  readonly skipped?: string;
  readonly probes: readonly CapacityProbe[];
}

export interface CapacityReport {
  readonly delayMs: number;
  /** The model's own time from a reply's first delta to its last, at this pace. */
  readonly idealPacingMs: number;
  readonly paceSlack: number;
  readonly step: number;
  readonly results: readonly CapacityResult[];
}

export function capacityScenario(concurrency: number, delayMs: number): Scenario {
  return {
    name: `capacity-${concurrency}`,
    title: `Streams per core: ${concurrency} held replies at ${delayMs} ms a token, all opened at once`,
    concurrency,
    total: concurrency,
    // One round of the warm-up's users (at most 50 at once).
    warmup: Math.min(50, concurrency),
    delayMs,
    prompt: DEFAULT_PROMPT,
    repetitions: 1,
    rampMs: 0,
    streamTimeoutMs: 120_000,
    alone: true,
  };
}

export function idealPacingMs(delayMs: number): number {
  return (deltasOf(capacityScenario(1, delayMs)) - 1) * delayMs;
}

export function verdict(m: RunMetrics, idealMs: number): { keepsPace: boolean; why?: string } {
  if (m.complete < m.streams)
    return { keepsPace: false, why: `${m.streams - m.complete} of ${m.streams} streams failed (${m.errorSamples[0] ?? 'incomplete'})` };
  if (m.pacingP99Ms === undefined) return { keepsPace: false, why: 'no stream paced' };
  if (m.pacingP99Ms > idealMs * PACE_SLACK) return { keepsPace: false, why: `pacing p99 ${(m.pacingP99Ms / idealMs).toFixed(2)}× the model's` };
  return { keepsPace: true };
}

/** The next concurrency to try, or undefined when the search is done. */
export function nextTry(kept: number | undefined, missed: number | undefined, last: number, cap: number, step: number): number | undefined {
  const round = (c: number): number => Math.max(step, Math.round(c / step) * step);
  if (missed === undefined) {
    if (last >= cap) return undefined;
    return Math.min(cap, round(last * 2));
  }
  if (kept === undefined) {
    // Not even the first try kept pace: halve until one does, or until a single step fails.
    if (missed <= step) return undefined;
    return round(missed / 2) < missed ? round(missed / 2) : undefined;
  }
  if (missed - kept <= step) return undefined;
  const mid = round((kept + missed) / 2);
  return mid > kept && mid < missed ? mid : undefined;
}

export interface SearchOptions {
  readonly loadWorkers?: number;
  readonly log: (line: string) => void;
}

export async function searchCapacity(name: TargetName, settings: CapacitySettings, options: SearchOptions): Promise<CapacityResult> {
  const target = targetByName(name);
  const idealMs = idealPacingMs(settings.delayMs);
  // Each held stream is a descriptor in the load generator and one in the server, and in front of
  // an upstream one more (see main.ts).
  const limit = openFilesLimit();
  const perStream = target.upstreamEnv ? 2 : 1;
  const fdCap = limit === undefined ? Number.POSITIVE_INFINITY : Math.floor((limit - 512) / perStream);
  const cap = Math.min(settings.max, fdCap);
  const probes: CapacityProbe[] = [];
  let kept: number | undefined;
  let missed: number | undefined;
  let skipped: string | undefined;
  for (let c: number | undefined = Math.min(settings.start, cap); c !== undefined; c = nextTry(kept, missed, c, cap, settings.step)) {
    const scenario = capacityScenario(c, settings.delayMs);
    const opened = await openTarget(target, scenario, {
      tag: `capacity-${name}-${c}`,
      ...(options.loadWorkers ? { loadWorkers: options.loadWorkers } : {}),
    });
    if ('skipped' in opened) {
      skipped = opened.skipped;
      break;
    }
    let metrics: RunMetrics;
    try {
      metrics = await opened.open.run(`capacity-${name}-${c}`);
    } finally {
      await opened.open.close();
    }
    const v = verdict(metrics, idealMs);
    probes.push({ concurrency: c, ...v, metrics });
    options.log(
      `  ${name.padEnd(20)} C=${String(c).padStart(5)}: ${v.keepsPace ? 'keeps pace' : `falls behind: ${v.why}`}; pacing p99 ${Math.round(metrics.pacingP99Ms ?? Number.NaN)} ms ` +
        `(ideal ${idealMs}), server ${Math.round((metrics.serverCpuMs / metrics.wallMs) * 100)}% of a core, load generator ${Math.round(metrics.clientCpuShare * 100)}%`,
    );
    if (v.keepsPace) kept = c;
    else missed = c;
  }
  const capped =
    missed === undefined && kept !== undefined && kept >= cap
      ? cap === settings.max
        ? `--capacity-max ${settings.max}`
        : `ulimit -n ${limit} (${perStream} descriptor${perStream > 1 ? 's' : ''} a stream)`
      : undefined;
  return {
    target: name,
    label: target.label,
    sluice: target.sluice,
    largest: kept,
    firstMissed: missed,
    ...(capped ? { capped } : {}),
    ...(skipped ? { skipped } : {}),
    probes,
  };
}

/**
 * The targets of a run that the search covers: Sluice on each transport and the raw writers of each
 * wire, and the proxy path as the OpenAI route in front of the fake upstream, with that upstream
 * alone as its floor (the reference targets, and the other proxy rows, would double its time).
 */
export function capacityTargets(targets: readonly TargetName[]): TargetName[] {
  return targets.filter((name) => {
    const t = targetByName(name);
    if (t.reference) return false;
    return !isProxyPath(t) || name === 'openai-upstream' || name === 'sluice-proxy-openai';
  });
}

export async function runCapacity(targets: readonly TargetName[], settings: CapacitySettings, options: SearchOptions): Promise<CapacityReport> {
  options.log(`# capacity: streams per core, the largest C that keeps pace (${settings.delayMs} ms a token; pacing p99 ≤ ${PACE_SLACK}× the model's)`);
  const results: CapacityResult[] = [];
  // Baselines first, as the scenarios run them.
  const ordered = [...targets].sort((a, b) => Number(targetByName(a).sluice) - Number(targetByName(b).sluice));
  for (const name of ordered) results.push(await searchCapacity(name, settings, options));
  return { delayMs: settings.delayMs, idealPacingMs: idealPacingMs(settings.delayMs), paceSlack: PACE_SLACK, step: settings.step, results };
}
