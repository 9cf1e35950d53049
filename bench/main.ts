import { mkdir, mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { repoRoot } from './child-server.ts';
import { parseOptions, USAGE, UsageError } from './options.ts';
import { openFilesLimit } from './proc-stats.ts';
import { formatSummary, profileFiles, summarizeProfile } from './profile-summary.ts';
import { stopBenchPostgres } from './postgres.ts';
import { stopBenchRedis } from './redis.ts';
import { runBench } from './run.ts';
import { targetByName } from './targets.ts';
import { updateReadme } from './report/readme.ts';
import { consoleReport } from './report/text.ts';
import { writeReport } from './report/write.ts';

// `npm run bench`: runs the scenarios on Sluice and the baselines, prints the table and writes
// bench/results/latest.{json,md,svg}. `npm run bench -- --profile` profiles Sluice instead.

let options;
try {
  options = parseOptions(process.argv.slice(2));
} catch (error) {
  if (!(error instanceof UsageError)) throw error;
  console.error(`bench: ${error.message}\n\n${USAGE}`);
  process.exit(2);
}
if (options.help) {
  console.log(USAGE);
  process.exit(0);
}

// Each held stream needs a descriptor in the load generator and one in the server (both inherit
// this limit), and Sluice in front of an upstream one more for its upstream connection. Node
// cannot raise it: run `ulimit -n <n>` in the shell first.
const biggest = Math.max(...options.scenarios.map((s) => s.concurrency));
const perStream = options.targets.some((t) => targetByName(t).upstreamEnv !== undefined) ? 2 : 1;
const limit = openFilesLimit();
if (limit !== undefined && limit < biggest * perStream + 512) {
  console.error(
    `bench: ${biggest} concurrent streams need more open files than the limit (${limit}); run \`ulimit -n ${biggest * (perStream + 1) + 1024}\` first, or lower --held`,
  );
  process.exit(2);
}

const outDir = resolve(repoRoot, options.outDir);
const profileDir = options.profile ? resolve(options.profileDir ?? (await mkdtemp(join(tmpdir(), 'sluice-bench-prof-')))) : undefined;

let report;
try {
  report = await runBench({
    scenarios: options.scenarios,
    targets: options.targets,
    cpuProfileDir: profileDir,
    concurrentTargets: options.smoke,
    loadWorkers: options.loadWorkers,
  });
} finally {
  await stopBenchRedis();
  stopBenchPostgres();
}
console.log(`\n${consoleReport(report)}\n`);

if (profileDir) {
  const sections: string[] = [
    `CPU profiles (node --cpu-prof, main thread) of the servers in the ${options.scenarios.map((s) => s.name).join(', ')} scenario, ` +
      `measured window only (start-up and warm-up left out); ${report.machine.cpus} CPUs (${report.machine.cpuModel}), Node ${report.machine.node}, commit ${report.machine.commit}.`,
    'Figures under the profiler are higher than without it.',
    '',
  ];
  for (const file of profileFiles([profileDir])) {
    const text = formatSummary(summarizeProfile(file, 15)).replace(`${profileDir}/`, '');
    console.log(`${text}\n`);
    sections.push('```text', text, '```', '');
  }
  await mkdir(outDir, { recursive: true });
  await writeFile(join(outDir, 'profile.md'), sections.join('\n'));
  console.log(`profiles in ${profileDir}; summary in ${join(outDir, 'profile.md')}`);
} else {
  const files = await writeReport(report, outDir);
  console.log(`wrote ${files.json}, ${files.markdown}, ${files.svg}`);
  if (options.updateReadme) {
    await updateReadme(join(repoRoot, 'README.md'), await readFile(files.markdown, 'utf8'));
    console.log('updated the Benchmarks section of README.md');
  }
}
