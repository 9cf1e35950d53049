import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';

// Reads V8 .cpuprofile files (written by `node --cpu-prof`) and lists the functions with the most
// self time. Usage: tsx bench/profile-summary.ts <file-or-dir>... [--top 15] [--all-threads]
// (a directory is searched recursively; by default only main-thread profiles are read).

interface ProfileNode {
  readonly id: number;
  readonly callFrame: { readonly functionName: string; readonly url: string; readonly lineNumber: number; readonly columnNumber: number };
  readonly hitCount?: number;
  readonly children?: readonly number[];
}

interface CpuProfile {
  readonly nodes: readonly ProfileNode[];
  readonly startTime: number;
  readonly endTime: number;
  readonly samples?: readonly number[];
  readonly timeDeltas?: readonly number[];
}

/**
 * The measured part of a run, in microseconds of the system's monotonic clock, which is the clock
 * of V8's profile timestamps (and of process.hrtime): the bench writes it next to the profiles.
 */
export interface ProfileWindow {
  readonly startUs: number;
  readonly endUs: number;
  /** Token events the load generator received in the window (for µs per event). */
  readonly events?: number;
}

export const WINDOW_FILE = 'window.json';

export function monotonicMicros(): number {
  return Number(process.hrtime.bigint() / 1000n);
}

function windowFor(file: string): ProfileWindow | undefined {
  const path = join(dirname(file), WINDOW_FILE);
  return existsSync(path) ? (JSON.parse(readFileSync(path, 'utf8')) as ProfileWindow) : undefined;
}

export interface SelfTimeRow {
  readonly name: string;
  readonly location: string;
  readonly selfMs: number;
  readonly percent: number;
}

export interface ProfileSummary {
  readonly file: string;
  readonly totalMs: number;
  /** Only samples inside the bench's measured window were counted (start-up and warm-up left out). */
  readonly windowed: boolean;
  /** Events in the window, when known: rows then also show microseconds per event. */
  readonly events: number | undefined;
  /** Share of non-idle time by where the code lives (Sluice, tRPC, ws, node internals, ...). */
  readonly byArea: ReadonlyArray<{ readonly area: string; readonly percent: number }>;
  readonly top: readonly SelfTimeRow[];
  /** Sluice's own functions (server/, shared/) by total time: their own and their callees'. */
  readonly ownTotal: readonly SelfTimeRow[];
}

function shortLocation(url: string, line: number): string {
  if (!url) return '(native)';
  let path = url.replace(/^file:\/\//, '');
  const nm = path.lastIndexOf('node_modules/');
  if (nm !== -1) path = path.slice(nm + 'node_modules/'.length);
  else {
    const repo = path.search(/\/(server|bench|shared|client)\//);
    if (repo !== -1) path = path.slice(repo + 1);
  }
  return `${path}:${line + 1}`;
}

function areaOf(url: string, name: string): string {
  if (name === '(garbage collector)') return 'GC';
  if (name === '(program)' || name === '(idle)') return name;
  if (!url) return 'native/V8';
  if (url.startsWith('node:')) return 'node internals';
  const nm = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (nm) return nm[1]!;
  const m = /\/(server|bench|shared|client)\//.exec(url);
  return m ? `${m[1]}/` : 'other';
}

export function summarizeProfile(file: string, topN = 15, window: ProfileWindow | undefined = windowFor(file)): ProfileSummary {
  const profile = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  // Self time per node from the samples and their time deltas (more exact than hitCount × interval).
  const selfUs = new Map<number, number>();
  const samples = profile.samples ?? [];
  const deltas = profile.timeDeltas ?? [];
  let at = profile.startTime;
  for (let i = 0; i < samples.length; i++) {
    at += deltas[i] ?? 0;
    if (window && (at < window.startUs || at > window.endUs)) continue;
    const next = deltas[i + 1] ?? 0;
    selfUs.set(samples[i]!, (selfUs.get(samples[i]!) ?? 0) + Math.max(0, next));
  }
  const rows = new Map<string, { name: string; location: string; us: number }>();
  const areas = new Map<string, number>();
  let busyUs = 0;
  for (const [id, us] of selfUs) {
    const node = byId.get(id);
    if (!node) continue;
    const { functionName, url, lineNumber } = node.callFrame;
    const name = functionName || '(anonymous)';
    if (name === '(idle)') continue;
    busyUs += us;
    const area = areaOf(url, name);
    areas.set(area, (areas.get(area) ?? 0) + us);
    const location = shortLocation(url, lineNumber);
    const key = `${name} ${location}`;
    const row = rows.get(key) ?? { name, location, us: 0 };
    row.us += us;
    rows.set(key, row);
  }
  // Total time of Sluice's own functions: each sample counts once for every such function on its stack.
  const parent = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const totals = new Map<string, { name: string; location: string; us: number }>();
  for (const [id, us] of selfUs) {
    const leaf = byId.get(id);
    if (!leaf || leaf.callFrame.functionName === '(idle)') continue;
    const seen = new Set<string>();
    for (let at: number | undefined = id; at !== undefined; at = parent.get(at)) {
      const { functionName, url, lineNumber } = byId.get(at)!.callFrame;
      if (!/\/(server|shared)\//.test(url) || url.includes('node_modules')) continue;
      const name = functionName || '(anonymous)';
      const location = shortLocation(url, lineNumber);
      const key = `${name} ${location}`;
      if (seen.has(key)) continue;
      seen.add(key);
      const row = totals.get(key) ?? { name, location, us: 0 };
      row.us += us;
      totals.set(key, row);
    }
  }
  const pct = (us: number): number => (busyUs > 0 ? (us * 100) / busyUs : 0);
  return {
    file,
    totalMs: busyUs / 1000,
    windowed: window !== undefined,
    events: window?.events,
    byArea: [...areas].sort((a, b) => b[1] - a[1]).map(([area, us]) => ({ area, percent: pct(us) })),
    top: [...rows.values()]
      .sort((a, b) => b.us - a.us)
      .slice(0, topN)
      .map((r) => ({ name: r.name, location: r.location, selfMs: r.us / 1000, percent: pct(r.us) })),
    ownTotal: [...totals.values()]
      .sort((a, b) => b.us - a.us)
      .slice(0, 10)
      .map((r) => ({ name: r.name, location: r.location, selfMs: r.us / 1000, percent: pct(r.us) })),
  };
}

export function formatSummary(s: ProfileSummary): string {
  const perEvent = s.events !== undefined && s.events > 0 ? s.events : undefined;
  const row = (r: SelfTimeRow): string =>
    `  ${r.selfMs.toFixed(1).padStart(7)} ${r.percent.toFixed(1).padStart(5)}` +
    (perEvent ? ` ${((r.selfMs * 1000) / perEvent).toFixed(2).padStart(7)}` : '') +
    `  ${r.name} (${r.location})`;
  const unit = perEvent ? '     µs/ev' : '';
  const lines = [
    `${s.file}: ${s.totalMs.toFixed(0)} ms of non-idle samples${s.windowed ? ' in the measured window' : ''}` +
      (perEvent ? `, ${perEvent} events (${((s.totalMs * 1000) / perEvent).toFixed(1)} µs/event)` : ''),
    `  by area: ${s.byArea
      .filter((a) => a.percent >= 1)
      .map((a) => `${a.area} ${a.percent.toFixed(1)}%`)
      .join(', ')}`,
    `  self ms      %${unit}  function (location)`,
  ];
  for (const r of s.top) lines.push(row(r));
  if (s.ownTotal.length > 0) {
    lines.push('  Sluice code (server/, shared/) by total time, callees included:', ` total ms      %${unit}  function (location)`);
    for (const r of s.ownTotal) lines.push(row(r));
  }
  return lines.join('\n');
}

/** V8's default profile name is `CPU.<date>.<time>.<pid>.<thread id>.<seq>.cpuprofile`; the main thread is 0. */
export function isMainThreadProfile(file: string): boolean {
  return /\.\d+\.0\.\d+\.cpuprofile$/.test(file);
}

/** Profile files under the given files or directories (recursively), main-thread ones only unless `all`. */
export function profileFiles(paths: readonly string[], all = false): string[] {
  return paths.flatMap((p) => {
    let entries: string[];
    try {
      entries = readdirSync(p, { recursive: true }).map(String);
    } catch {
      return [p];
    }
    return entries
      .filter((f) => f.endsWith('.cpuprofile') && (all || isMainThreadProfile(f)))
      .sort()
      .map((f) => join(p, f));
  });
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const args = process.argv.slice(2);
  const topAt = args.indexOf('--top');
  const top = topAt === -1 ? 15 : Number(args.splice(topAt, 2)[1]);
  const allAt = args.indexOf('--all-threads');
  if (allAt !== -1) args.splice(allAt, 1);
  if (args.length === 0) {
    console.error('usage: tsx bench/profile-summary.ts <file.cpuprofile | dir>... [--top 15] [--all-threads]');
    process.exit(2);
  }
  for (const file of profileFiles(args, allAt !== -1)) console.log(`${formatSummary(summarizeProfile(file, top))}\n`);
}
