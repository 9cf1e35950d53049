import { DEFAULT_CAPACITY, type CapacitySettings } from './capacity.ts';
import { buildScenarios, DEFAULT_SETTINGS, type Scenario, type ScenarioSettings } from './scenarios.ts';
import { TARGET_GROUPS, TARGET_NAMES, targetByName, type TargetName } from './targets.ts';

// Command-line flags of `npm run bench -- ...`; each has a BENCH_* variable that mirrors it
// (`--held 1000,2000` or BENCH_HELD=1000,2000). Flags win over variables.

export const USAGE = `usage: npm run bench -- [flags]

  --scenarios LIST          latency,throughput,held,storm,long,capacity (default: all)
  --targets LIST            ${TARGET_NAMES.join(',')}
                            or a group: ${Object.entries(TARGET_GROUPS)
                              .map(([g, t]) => `${g} (${t.join(',')})`)
                              .join('; ')}
                            (default: all; in --profile mode: the sluice-* ones)
  --latency-streams N       replies in the latency scenario (default ${DEFAULT_SETTINGS.latencyStreams})
  --latency-turn N          the latency scenario's servers take turns every N replies (default ${DEFAULT_SETTINGS.latencyTurn})
  --throughput-streams N    replies in the throughput scenario (default ${DEFAULT_SETTINGS.throughputStreams})
  --throughput-concurrency N  (default ${DEFAULT_SETTINGS.throughputConcurrency})
  --reps N                  repetitions of the throughput scenario (default ${DEFAULT_SETTINGS.throughputReps})
  --throughput-turn N       the throughput scenario's servers take turns every N replies (default ${DEFAULT_SETTINGS.throughputTurn}; 0: whole runs)
  --held LIST               concurrencies of the held-stream scenario (default ${DEFAULT_SETTINGS.heldConcurrency.join(',')})
  --held-delay-ms N         token delay of held streams (default ${DEFAULT_SETTINGS.heldDelayMs})
  --held-reps N             runs of the smallest held concurrency, back to back on each server; the
                            larger ones run once, without the reference baselines (default ${DEFAULT_SETTINGS.heldReps})
  --storm N                 streams of the storm scenario, all started at once over new connections, at
                            --held-delay-ms a token; runs --held-reps times (default ${DEFAULT_SETTINGS.stormConcurrency})
  --capacity-start N        streams per core: the first concurrency tried (default ${DEFAULT_CAPACITY.start})
  --capacity-max N          streams per core: the most tried (default ${DEFAULT_CAPACITY.max}; also bounded by ulimit -n)
  --capacity-step N         streams per core: the search stops when it knows the largest C to within N (default ${DEFAULT_CAPACITY.step})
  --long-words N            prompt words of the long reply; the reply has N + 37 deltas (default ${DEFAULT_SETTINGS.longWords})
  --long-concurrency N      (default ${DEFAULT_SETTINGS.longConcurrency})
  --long-streams N          (default ${DEFAULT_SETTINGS.longStreams})
  --ramp-ms N               spread the users' starts over N ms (default 0: all at once)
  --load-workers N          drive each target's load from N worker threads, each with its own client and a
                            share of the users (default 1: the bench's own event loop); for when the load
                            generator's CPU nears a whole core (the "load gen" column)
  --out DIR                 where latest.{json,md,svg} go (default bench/results)
  --smoke                   a tiny run of every transport (2 users, 4 replies, all servers at once), for tests
  --profile                 run the throughput scenario once with the servers under --cpu-prof and print
                            the top self-time functions per transport (writes <out>/profile.md, not latest.*)
  --profile-dir DIR         where the .cpuprofile files go (default: a new temporary directory)
  --update-readme           also put the figures into README.md's Benchmarks section
  --help`;

export interface CliOptions {
  readonly scenarios: Scenario[];
  /** The streams-per-core search, when asked for (`capacity` in --scenarios). */
  readonly capacity: CapacitySettings | undefined;
  readonly targets: TargetName[];
  readonly outDir: string;
  readonly loadWorkers: number;
  readonly profile: boolean;
  readonly profileDir: string | undefined;
  readonly smoke: boolean;
  readonly updateReadme: boolean;
  readonly help: boolean;
}

const FLAGS = [
  'scenarios',
  'targets',
  'latency-streams',
  'latency-turn',
  'throughput-streams',
  'throughput-concurrency',
  'reps',
  'throughput-turn',
  'held',
  'held-delay-ms',
  'held-reps',
  'storm',
  'capacity-start',
  'capacity-max',
  'capacity-step',
  'long-words',
  'long-concurrency',
  'long-streams',
  'ramp-ms',
  'load-workers',
  'out',
  'profile-dir',
] as const;
const SWITCHES = ['smoke', 'profile', 'update-readme', 'help'] as const;

export class UsageError extends Error {}

const SCENARIO_NAMES = ['latency', 'throughput', 'held', 'storm', 'long', 'capacity'] as const;

function envName(flag: string): string {
  return `BENCH_${flag.replaceAll('-', '_').toUpperCase()}`;
}

function readArgs(argv: readonly string[], env: Record<string, string | undefined>): Map<string, string> {
  const values = new Map<string, string>();
  for (const flag of [...FLAGS, ...SWITCHES]) {
    const v = env[envName(flag)];
    if (v !== undefined && v !== '') values.set(flag, v);
  }
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--') continue;
    if (!arg.startsWith('--')) throw new UsageError(`unexpected argument "${arg}"`);
    const eq = arg.indexOf('=');
    const name = eq === -1 ? arg.slice(2) : arg.slice(2, eq);
    if ((SWITCHES as readonly string[]).includes(name)) {
      values.set(name, eq === -1 ? 'true' : arg.slice(eq + 1));
      continue;
    }
    if (!(FLAGS as readonly string[]).includes(name)) throw new UsageError(`unknown flag --${name}`);
    const value = eq !== -1 ? arg.slice(eq + 1) : argv[++i];
    if (value === undefined) throw new UsageError(`--${name} needs a value`);
    values.set(name, value);
  }
  return values;
}

function positive(values: Map<string, string>, flag: string, fallback: number, min = 1): number {
  const raw = values.get(flag);
  if (raw === undefined) return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < min) throw new UsageError(`--${flag} must be an integer ≥ ${min}, got "${raw}"`);
  return n;
}

function list(values: Map<string, string>, flag: string): string[] | undefined {
  return values
    .get(flag)
    ?.split(',')
    .map((s) => s.trim())
    .filter(Boolean);
}

const truthy = (v: string | undefined): boolean => v !== undefined && v !== 'false' && v !== '0';

export function parseOptions(argv: readonly string[], env: Record<string, string | undefined> = process.env): CliOptions {
  const values = readArgs(argv, env);
  const smoke = truthy(values.get('smoke'));
  const profile = truthy(values.get('profile'));
  const settings: ScenarioSettings = {
    latencyStreams: positive(values, 'latency-streams', DEFAULT_SETTINGS.latencyStreams),
    latencyTurn: positive(values, 'latency-turn', DEFAULT_SETTINGS.latencyTurn),
    throughputStreams: positive(values, 'throughput-streams', DEFAULT_SETTINGS.throughputStreams),
    throughputConcurrency: positive(values, 'throughput-concurrency', DEFAULT_SETTINGS.throughputConcurrency),
    throughputReps: profile ? 1 : positive(values, 'reps', DEFAULT_SETTINGS.throughputReps),
    throughputTurn: profile ? 0 : positive(values, 'throughput-turn', DEFAULT_SETTINGS.throughputTurn, 0),
    heldConcurrency: (list(values, 'held') ?? DEFAULT_SETTINGS.heldConcurrency.map(String)).map((c) => {
      const n = Number(c);
      if (!Number.isInteger(n) || n < 1) throw new UsageError(`--held takes positive integers, got "${c}"`);
      return n;
    }),
    heldDelayMs: positive(values, 'held-delay-ms', DEFAULT_SETTINGS.heldDelayMs, 0),
    heldReps: profile ? 1 : positive(values, 'held-reps', DEFAULT_SETTINGS.heldReps),
    stormConcurrency: positive(values, 'storm', DEFAULT_SETTINGS.stormConcurrency),
    longWords: positive(values, 'long-words', DEFAULT_SETTINGS.longWords),
    longConcurrency: positive(values, 'long-concurrency', DEFAULT_SETTINGS.longConcurrency),
    longStreams: positive(values, 'long-streams', DEFAULT_SETTINGS.longStreams),
    rampMs: positive(values, 'ramp-ms', DEFAULT_SETTINGS.rampMs, 0),
  };

  let scenarios: Scenario[];
  let capacity: CapacitySettings | undefined;
  if (smoke) {
    scenarios = [smokeScenario()];
  } else {
    const all = buildScenarios(settings);
    const wanted = list(values, 'scenarios') ?? (profile ? ['throughput'] : [...SCENARIO_NAMES]);
    for (const w of wanted) {
      if (!(SCENARIO_NAMES as readonly string[]).includes(w) && !all.some((s) => s.name === w)) {
        throw new UsageError(`unknown scenario "${w}" (known: ${SCENARIO_NAMES.join(', ')})`);
      }
    }
    scenarios = all.filter((s) => wanted.includes(s.name) || (wanted.includes('held') && s.name.startsWith('held-')));
    if (wanted.includes('capacity')) {
      capacity = {
        start: positive(values, 'capacity-start', DEFAULT_CAPACITY.start),
        max: positive(values, 'capacity-max', DEFAULT_CAPACITY.max),
        step: positive(values, 'capacity-step', DEFAULT_CAPACITY.step),
        delayMs: settings.heldDelayMs,
      };
      if (capacity.max < capacity.start) throw new UsageError(`--capacity-max (${capacity.max}) is below --capacity-start (${capacity.start})`);
    }
  }

  const targetList = list(values, 'targets');
  const targets = [
    ...new Set((targetList ?? TARGET_NAMES.filter((t) => !profile || t.startsWith('sluice-'))).flatMap((t) => TARGET_GROUPS[t] ?? [targetByName(t).name])),
  ];

  return {
    scenarios,
    capacity,
    targets,
    outDir: values.get('out') ?? 'bench/results',
    loadWorkers: positive(values, 'load-workers', 1),
    profile,
    profileDir: values.get('profile-dir'),
    smoke,
    updateReadme: truthy(values.get('update-readme')),
    help: truthy(values.get('help')),
  };
}

/** Every transport, 2 users, 4 short replies: checks that the bench still works, in seconds. */
export function smokeScenario(): Scenario {
  return {
    name: 'smoke',
    title: 'Smoke: 2 users, 4 replies, no token delay',
    concurrency: 2,
    total: 4,
    warmup: 0,
    delayMs: 0,
    prompt: 'explain caching',
    repetitions: 1,
    rampMs: 0,
    streamTimeoutMs: 20_000,
  };
}
