import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';

// Server-side figures read from /proc, so they cover the server process only (never the load
// generator): CPU time from /proc/<pid>/task/*/schedstat (or /proc/<pid>/stat), resident memory
// from /proc/<pid>/status.

let clockTicks: number | undefined;
function ticksPerSecond(): number {
  if (clockTicks === undefined) {
    try {
      clockTicks = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
    } catch {
      clockTicks = 100;
    }
  }
  return clockTicks;
}

/**
 * The process and its descendants (a server started with WORKERS > 1 is a cluster primary with a
 * worker per core): everything the server under test runs, and nothing of the load generator.
 */
export function processTree(pid: number): number[] {
  const children = new Map<number, number[]>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      const list = children.get(ppid) ?? [];
      list.push(Number(entry));
      children.set(ppid, list);
    } catch {
      // Gone while we looked.
    }
  }
  const tree = [pid];
  for (let i = 0; i < tree.length; i++) tree.push(...(children.get(tree[i]!) ?? []));
  return tree;
}

/**
 * CPU time of the processes so far, in microseconds: every thread's time on a CPU from
 * schedstat (nanoseconds), so that a turn of a few replies can be measured; where the kernel has
 * no schedstat, user + system time from stat (one clock tick, 10 ms, of resolution).
 */
export function processCpuMicros(pid: number, members: readonly number[] = processTree(pid)): number {
  let total = 0;
  for (const member of members) {
    try {
      total += ownCpuMicros(member);
    } catch {
      if (member === pid) throw new Error(`no /proc/${pid}/stat`);
    }
  }
  return total;
}

let schedstat: boolean | undefined;

function ownCpuMicros(pid: number): number {
  schedstat ??= existsSync('/proc/self/schedstat');
  if (schedstat) {
    // Threads that have exited are not counted: a Node server's threads live as long as it does.
    let ns = 0;
    for (const task of readdirSync(`/proc/${pid}/task`)) {
      try {
        ns += Number(readFileSync(`/proc/${pid}/task/${task}/schedstat`, 'utf8').split(' ')[0]);
      } catch {
        // The thread ended while we looked.
      }
    }
    return ns / 1000;
  }
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // The command name (field 2) is in parentheses and may hold spaces: count fields after the last ')'.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const utime = Number(fields[11]); // field 14
  const stime = Number(fields[12]); // field 15
  return ((utime + stime) * 1e6) / ticksPerSecond();
}

/** Resident set size in bytes (VmRSS) of the process and its descendants. */
export function processRssBytes(pid: number, members: readonly number[] = processTree(pid)): number {
  let total = 0;
  for (const member of members) {
    try {
      total += ownRssBytes(member);
    } catch {
      if (member === pid) throw new Error(`no VmRSS in /proc/${pid}/status`);
    }
  }
  return total;
}

function ownRssBytes(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const match = /^VmRSS:\s+(\d+) kB$/m.exec(status);
  if (!match) throw new Error(`no VmRSS in /proc/${pid}/status`);
  return Number(match[1]) * 1024;
}

/** The soft limit on open files of this process (the load generator's; the server inherits it). */
export function openFilesLimit(): number | undefined {
  try {
    const limits = readFileSync('/proc/self/limits', 'utf8');
    const match = /^Max open files\s+(\d+|unlimited)/m.exec(limits);
    if (!match) return undefined;
    return match[1] === 'unlimited' ? Number.POSITIVE_INFINITY : Number(match[1]);
  } catch {
    return undefined;
  }
}

/** Samples a process's RSS at an interval and keeps the peak. */
export class RssSampler {
  readonly #pid: number;
  readonly #members: readonly number[] | undefined;
  readonly #timer: NodeJS.Timeout;
  #peak = 0;

  /** `members`: the process tree, when it is known not to change meanwhile (read afresh otherwise). */
  constructor(pid: number, members?: readonly number[], intervalMs = 50) {
    this.#pid = pid;
    this.#members = members;
    this.sample();
    this.#timer = setInterval(() => this.sample(), intervalMs);
  }

  sample(): void {
    try {
      this.#peak = Math.max(this.#peak, processRssBytes(this.#pid, this.#members));
    } catch {
      // The process is gone; the peak so far stands.
    }
  }
  /** Stops sampling (after one last sample) and returns the peak in bytes. */
  stop(): number {
    clearInterval(this.#timer);
    this.sample();
    return this.#peak;
  }
}
