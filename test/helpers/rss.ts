import { readFileSync } from 'node:fs';

/** A process's resident set size, in bytes (Linux: /proc). */
export function rssOf(pid: number): number {
  const match = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (!match) throw new Error(`no VmRSS for process ${pid}`);
  return Number(match[1]) * 1024;
}

export interface RssWatch {
  /** The highest RSS seen so far. */
  peak(): number;
  stop(): number;
}

/** Samples a process's RSS every few milliseconds and keeps the peak. */
export function watchRss(pid: number, everyMs = 10): RssWatch {
  let peak = rssOf(pid);
  const timer = setInterval(() => {
    try {
      peak = Math.max(peak, rssOf(pid));
    } catch {
      // The process is gone: the peak so far stands.
    }
  }, everyMs);
  return {
    peak: () => peak,
    stop: () => {
      clearInterval(timer);
      return peak;
    },
  };
}
