import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import os from 'node:os';
import { repoRoot } from './child-server.ts';
import { openFilesLimit } from './proc-stats.ts';

export interface MachineInfo {
  readonly cpus: number;
  readonly cpuModel: string;
  readonly node: string;
  readonly os: string;
  readonly memoryGB: number;
  readonly openFilesLimit: number | null;
  readonly commit: string;
}

function cpuModel(): string {
  try {
    const match = /^model name\s*:\s*(.+)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'));
    if (match) return match[1]!.trim();
  } catch {
    // not Linux
  }
  return os.cpus()[0]?.model ?? 'unknown';
}

function commit(): string {
  try {
    const head = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: repoRoot, encoding: 'utf8' }).trim();
    const dirty = execFileSync('git', ['status', '--porcelain', '--', 'server', 'shared'], { cwd: repoRoot, encoding: 'utf8' }).trim();
    return dirty ? `${head} (+ uncommitted changes in server/ or shared/)` : head;
  } catch {
    return 'unknown';
  }
}

export function machineInfo(): MachineInfo {
  const limit = openFilesLimit();
  return {
    cpus: os.availableParallelism(),
    cpuModel: cpuModel(),
    node: process.version,
    os: `${os.type()} ${os.release()}`,
    memoryGB: Math.round((os.totalmem() / 2 ** 30) * 10) / 10,
    openFilesLimit: limit === undefined || !Number.isFinite(limit) ? null : limit,
    commit: commit(),
  };
}
