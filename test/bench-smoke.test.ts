import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { smokeScenario } from '../bench/options.ts';
import { runBench } from '../bench/run.ts';
import { consoleReport } from '../bench/report/text.ts';
import { writeReport } from '../bench/report/write.ts';
import { TARGET_NAMES } from '../bench/targets.ts';
import { requireBinary } from './helpers/binaries.ts';

// A tiny run of `npm run bench` on every transport and baseline, so that the bench cannot rot.
// It checks that every stream arrived complete and in order and that the report files are written;
// the figures themselves are never asserted.

const dirs: string[] = [];
afterEach(async () => {
  for (const dir of dirs.splice(0)) await rm(dir, { recursive: true, force: true });
});

describe('bench smoke run', () => {
  it('streams every reply complete on every transport and writes the table, JSON and chart', { timeout: 180_000 }, async () => {
    const out = await mkdtemp(join(tmpdir(), 'sluice-bench-smoke-'));
    dirs.push(out);
    const log: string[] = [];
    const report = await runBench({
      scenarios: [smokeScenario()],
      targets: TARGET_NAMES,
      concurrentTargets: true,
      log: (line) => log.push(line),
    });

    const [scenario] = report.scenarios;
    expect(scenario, log.join('\n')).toBeDefined();
    expect(scenario!.results.map((r) => r.target).sort()).toEqual([...TARGET_NAMES].sort());
    // The Redis targets need redis-server: required in CI, may be missing locally.
    const haveRedis = requireBinary('redis-server') !== undefined;
    for (const result of scenario!.results) {
      const optional = !haveRedis && (result.target === 'sluice-sse-redis' || result.target === 'sluice-sse-cluster');
      if (!optional) expect(result.skipped, `${result.target}\n${log.join('\n')}`).toBeUndefined();
      if (result.skipped) continue;
      const m = result.metrics!;
      expect(m.errorSamples, `${result.target}\n${log.join('\n')}`).toEqual([]);
      expect(m.streams).toBe(4);
      expect(m.complete).toBe(4);
      expect(m.events).toBe(4 * scenario!.scenario.deltasPerStream);
    }

    const files = await writeReport(report, out);
    const json = JSON.parse(await readFile(files.json, 'utf8')) as { scenarios: Array<{ scenario: { name: string } }> };
    expect(json.scenarios[0]!.scenario.name).toBe('smoke');
    const markdown = await readFile(files.markdown, 'utf8');
    expect(markdown).toContain('| server | events/s | CPU µs/event');
    expect(markdown).toContain('Sluice SSE route');
    const svg = await readFile(files.svg, 'utf8');
    expect(svg).toMatch(/^<svg [^>]*xmlns="http:\/\/www\.w3\.org\/2000\/svg"/);
    expect(svg).toContain('Server CPU per event');
    expect(consoleReport(report)).toContain('Sluice tRPC WS');
  });
});
