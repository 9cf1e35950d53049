import { execFileSync } from 'node:child_process';
import { existsSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { repoRoot } from './child-server.ts';
import { openTarget, type OpenTarget, type RunPiece } from './measure.ts';
import { buildScenarios, DEFAULT_SETTINGS, type Scenario } from './scenarios.ts';
import { median } from './stats.ts';
import { targetByName, type Target, type TargetName } from './targets.ts';

// `npm run bench:ab -- --base <ref> [--head <ref>]`: the CPU per event of Sluice's transports built
// from two commits, measured in the same run, in alternating turns of the throughput scenario (and
// optionally the held one), so that a change is judged against its own parent and not against a
// run made on another day. Each ref is checked out in a worktree of its own (`git worktree`), with
// this checkout's node_modules, and bundled as `npm start` bundles it.

const USAGE = `usage: npm run bench:ab -- --base <ref> [--head <ref>] [--targets a,b] [--reps N] [--held N] [--store memory]

  --base REF     the commit measured as A (required)
  --head REF     the commit measured as B (default: this working tree)
  --targets      Sluice targets (default: sluice-sse,sluice-trpc-ws,sluice-trpc-sse,sluice-openai)
  --reps N       repetitions of the throughput scenario (default 7)
  --held N       also measure N held streams at 50 ms a token (default: none)
  --store S      STORE for both builds (default memory: a build from before STORE ignores it)
  --profile DIR  run both servers under --cpu-prof, profiles in DIR/<target>-<side>/ (figures are then higher)`;

interface Options {
  readonly base: string;
  readonly head: string | undefined;
  readonly targets: TargetName[];
  readonly reps: number;
  readonly held: number;
  readonly store: string;
  readonly profile: string | undefined;
}

function parse(argv: readonly string[]): Options {
  const values = new Map<string, string>();
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--') continue;
    if (!arg.startsWith('--') || argv[i + 1] === undefined) throw new Error(USAGE);
    values.set(arg.slice(2), argv[++i]!);
  }
  const base = values.get('base');
  if (!base) throw new Error(USAGE);
  return {
    base,
    head: values.get('head'),
    targets: (values.get('targets') ?? 'sluice-sse,sluice-trpc-ws,sluice-trpc-sse,sluice-openai').split(',').map((t) => targetByName(t).name),
    reps: Number(values.get('reps') ?? 7),
    held: Number(values.get('held') ?? 0),
    store: values.get('store') ?? 'memory',
    profile: values.get('profile'),
  };
}

/** A worktree of `ref` (made once, reused), sharing this checkout's node_modules. */
function worktree(ref: string): { root: string; sha: string } {
  const sha = execFileSync('git', ['rev-parse', '--short=10', ref], { cwd: repoRoot, encoding: 'utf8' }).trim();
  const root = join(tmpdir(), `sluice-ab-${sha}`);
  if (!existsSync(root)) execFileSync('git', ['worktree', 'add', '--detach', root, sha], { cwd: repoRoot, stdio: 'ignore' });
  if (!existsSync(join(root, 'node_modules'))) symlinkSync(join(repoRoot, 'node_modules'), join(root, 'node_modules'));
  return { root, sha };
}

interface Side {
  readonly label: string;
  /** For session ids and tags: letters only. */
  readonly tag: string;
  readonly entry: string;
}

async function measure(scenario: Scenario, targets: readonly Target[], sides: readonly Side[], store: string, profile: string | undefined): Promise<void> {
  console.log(`\n# ${scenario.title}`);
  for (const target of targets) {
    const opened: Array<{ side: Side; open: OpenTarget }> = [];
    try {
      for (const side of sides) {
        const variant: Target = { ...target, entry: side.entry };
        const result = await openTarget(variant, scenario, { tag: `ab-${target.name}-${side.tag}`, serverEnv: { STORE: store }, cpuProfileDir: profile });
        if ('skipped' in result) throw new Error(`${target.name} (${side.label}): ${result.skipped}`);
        opened.push({ side, open: result.open });
      }
      const cpu = new Map<string, number[]>(sides.map((s) => [s.label, []]));
      const turn = scenario.turnReplies ?? scenario.total;
      for (let rep = 0; rep < scenario.repetitions; rep++) {
        const pieces = new Map<string, RunPiece[]>(sides.map((s) => [s.label, []]));
        // Turns alternate between the builds, the order flipped each repetition.
        const order = rep % 2 === 0 ? opened : [...opened].reverse();
        for (let offset = 0; offset < scenario.total; offset += turn) {
          for (const { side, open } of order)
            pieces.get(side.label)!.push(await open.piece(`ab-${target.name}-${side.tag}-r${rep}`, offset, Math.min(turn, scenario.total - offset)));
        }
        for (const { side, open } of opened) {
          const metrics = await open.finish(pieces.get(side.label)!);
          if (metrics.complete < metrics.streams)
            throw new Error(`${target.name} (${side.label}): ${metrics.complete}/${metrics.streams} complete: ${metrics.errorSamples.join(' | ')}`);
          cpu.get(side.label)!.push(metrics.serverCpuUsPerEvent);
        }
      }
      const [a, b] = sides.map((s) => median(cpu.get(s.label)!)!);
      console.log(
        `${target.name.padEnd(18)} A ${a!.toFixed(2).padStart(7)} µs/event   B ${b!.toFixed(2).padStart(7)} µs/event   B/A ${(b! / a!).toFixed(3)}   ` +
          `(A runs ${cpu
            .get(sides[0]!.label)!
            .map((v) => v.toFixed(1))
            .join(' ')}; B runs ${cpu
            .get(sides[1]!.label)!
            .map((v) => v.toFixed(1))
            .join(' ')})`,
      );
    } finally {
      for (const { open } of opened) await open.close();
    }
  }
}

const options = parse(process.argv.slice(2));
const base = worktree(options.base);
const head = options.head ? worktree(options.head) : { root: repoRoot, sha: 'working tree' };
const sides: Side[] = [
  { label: `A=${base.sha}`, tag: 'a', entry: join(base.root, 'server/main.ts') },
  { label: `B=${head.sha}`, tag: 'b', entry: join(head.root, 'server/main.ts') },
];
console.log(`A/B: ${sides.map((s) => s.label).join(' vs ')}, STORE=${options.store}`);
const scenarios = buildScenarios({ ...DEFAULT_SETTINGS, throughputReps: options.reps, heldConcurrency: options.held > 0 ? [options.held] : [1] });
const targets = options.targets.map(targetByName);
await measure(
  scenarios.find((s) => s.name === 'throughput')!,
  targets,
  sides,
  options.store,
  options.profile,
);
if (options.held > 0) await measure({ ...scenarios.find((s) => s.name.startsWith('held-'))!, repetitions: 3 }, targets, sides, options.store, options.profile);
