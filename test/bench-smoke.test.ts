import { once } from 'node:events';
import { chmod, mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { BenchReport } from '../bench/run.ts';
import { TARGET_NAMES } from '../bench/targets.ts';
import { requireBinary } from './helpers/binaries.ts';
import { spawnNode } from './helpers/children.ts';

// A tiny run of `npm run bench` (the real command, as a process) on every transport and baseline,
// so that the bench cannot rot. It checks that every stream arrived complete and in order, that the
// report files are written and that the command exits by itself (a child process or socket left
// open would keep it running); the figures themselves are never asserted.

const dirs: string[] = [];
afterEach(async () => {
  for (const dir of dirs.splice(0)) await rm(dir, { recursive: true, force: true });
});

describe('bench smoke run', () => {
  it('streams every reply complete on every transport and writes the table, JSON and chart', { timeout: 180_000 }, async () => {
    const out = await mkdtemp(join(tmpdir(), 'sluice-bench-smoke-'));
    // The bench's own temporary directory, to see what it leaves there.
    const temp = await mkdtemp(join(tmpdir(), 'sluice-bench-tmp-'));
    await chmod(temp, 0o755); // the bench's PostgreSQL runs as the postgres user, beneath it
    dirs.push(out, temp);
    const bench = spawnNode(['--import', 'tsx', 'bench/main.ts', '--smoke', '--out', out], { env: { ...process.env, TMPDIR: temp } });
    let output = '';
    bench.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
    bench.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
    const [code] = (await once(bench, 'exit')) as [number | null];
    expect(code, output).toBe(0);
    // Every server's data directory (its SQLite history) goes with it.
    expect((await readdir(temp)).filter((name) => name.startsWith('sluice-bench-data-'))).toEqual([]);
    const log = [output];
    const report = JSON.parse(await readFile(join(out, 'latest.json'), 'utf8')) as BenchReport;

    const [scenario] = report.scenarios;
    expect(scenario, log.join('\n')).toBeDefined();
    expect(scenario!.results.map((r) => r.target).sort()).toEqual([...TARGET_NAMES].sort());
    // The Redis targets need redis-server: required in CI, may be missing locally.
    const haveRedis = requireBinary('redis-server') !== undefined;
    for (const result of scenario!.results) {
      const optional = !haveRedis && ['sluice-sse-redis', 'sluice-sse-cluster', 'sluice-sse-redis-cluster'].includes(result.target);
      if (!optional) expect(result.skipped, `${result.target}\n${log.join('\n')}`).toBeUndefined();
      if (result.skipped) continue;
      const m = result.metrics!;
      expect(m.errorSamples, `${result.target}\n${log.join('\n')}`).toEqual([]);
      expect(m.streams).toBe(4);
      expect(m.complete).toBe(4);
      expect(m.events).toBe(4 * scenario!.scenario.deltasPerStream);
    }

    expect(scenario!.scenario.name).toBe('smoke');
    const markdown = await readFile(join(out, 'latest.md'), 'utf8');
    expect(markdown).toContain('| server | events/s | CPU µs/event');
    expect(markdown).toContain('Sluice SSE route');
    const svg = await readFile(join(out, 'latest.svg'), 'utf8');
    expect(svg).toMatch(/^<svg [^>]*xmlns="http:\/\/www\.w3\.org\/2000\/svg"/);
    expect(svg).toContain('Server CPU per event');
    // The table printed on the console.
    expect(output).toMatch(/Sluice tRPC WS +\d/);
    // The proxy path: Sluice in front of the fake OpenAI upstream, checked against it.
    expect(output).toMatch(/Sluice OpenAI route, openai upstream +\d/);
    expect(markdown).toContain('fake OpenAI upstream (baseline)');
  });

  it('runs the storm over new connections and the streams-per-core search, and reports both', { timeout: 180_000 }, async () => {
    const out = await mkdtemp(join(tmpdir(), 'sluice-bench-smoke-'));
    dirs.push(out);
    const targets = ['raw-sse', 'sluice-sse', 'raw-trpc-sse', 'sluice-trpc-sse', 'openai-upstream', 'sluice-proxy-openai'];
    const args = ['--scenarios', 'storm,capacity', '--storm', '4', '--held-reps', '1', '--held-delay-ms', '20'];
    args.push('--capacity-start', '2', '--capacity-max', '4', '--capacity-step', '2', '--targets', targets.join(','), '--out', out);
    const bench = spawnNode(['--import', 'tsx', 'bench/main.ts', ...args]);
    let output = '';
    bench.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
    bench.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
    const [code] = (await once(bench, 'exit')) as [number | null];
    expect(code, output).toBe(0);
    const report = JSON.parse(await readFile(join(out, 'latest.json'), 'utf8')) as BenchReport;
    const [storm] = report.scenarios;
    expect(storm!.scenario).toMatchObject({ name: 'storm', concurrency: 4, freshConnections: true });
    expect(storm!.results.map((r) => r.target).sort()).toEqual([...targets].sort());
    for (const result of storm!.results) {
      expect(result.metrics?.errorSamples, `${result.target}\n${output}`).toEqual([]);
      expect(result.metrics?.complete).toBe(4);
    }
    // Every target of the search tried at least its first concurrency, each try a whole run.
    expect(report.capacity!.results.map((r) => r.target).sort()).toEqual([...targets].sort());
    for (const result of report.capacity!.results) {
      expect(result.probes.length, `${result.target}\n${output}`).toBeGreaterThan(0);
      expect(result.probes[0]!.concurrency).toBe(2);
      for (const probe of result.probes) expect(probe.metrics.complete, `${result.target}\n${output}`).toBe(probe.concurrency);
    }
    const markdown = await readFile(join(out, 'latest.md'), 'utf8');
    expect(markdown).toContain('#### Streams per core');
    expect(markdown).toContain('storm of 4: first event p99 ≤ 2×');
  });

  it('drives the load from worker threads (--load-workers), the proxy targets among them', { timeout: 120_000 }, async () => {
    const out = await mkdtemp(join(tmpdir(), 'sluice-bench-smoke-'));
    dirs.push(out);
    const bench = spawnNode(['--import', 'tsx', 'bench/main.ts', '--smoke', '--targets', 'proxy,sluice-trpc-sse', '--load-workers', '2', '--out', out]);
    let output = '';
    bench.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
    bench.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
    const [code] = (await once(bench, 'exit')) as [number | null];
    expect(code, output).toBe(0);
    const report = JSON.parse(await readFile(join(out, 'latest.json'), 'utf8')) as BenchReport;
    expect(report.loadWorkers).toBe(2);
    const [scenario] = report.scenarios;
    expect(scenario!.results.map((r) => r.target).sort()).toEqual([
      'openai-upstream',
      'sluice-proxy-openai',
      'sluice-proxy-sse',
      'sluice-proxy-trpc-ws',
      'sluice-trpc-sse',
    ]);
    // Two users and four replies, split over the two workers: every reply arrived whole.
    for (const result of scenario!.results) {
      expect(result.metrics?.errorSamples, `${result.target}\n${output}`).toEqual([]);
      expect(result.metrics?.complete).toBe(4);
      expect(result.metrics?.events).toBe(4 * scenario!.scenario.deltasPerStream);
    }
  });
});
