import { openAIClient, sseRouteClient } from './clients/http-sse.ts';
import { rawWsClient } from './clients/raw-ws.ts';
import { trpcSseClient, trpcWsClient } from './clients/trpc.ts';
import type { LoadClient } from './clients/types.ts';
import { benchPostgresUrl } from './postgres.ts';
import { benchRedisClusterNodes, benchRedisUrl } from './redis.ts';

// What the bench measures: Sluice on each of its transports, and the minimal baselines it is
// compared with in the same run. Each runs as its own child process, a fresh one for every scenario.

export type TargetName =
  | 'sluice-sse'
  | 'sluice-trpc-ws'
  | 'sluice-trpc-sse'
  | 'sluice-openai'
  | 'sluice-sse-redis'
  | 'sluice-sse-memory'
  | 'sluice-sse-postgres'
  | 'sluice-sse-cluster'
  | 'sluice-sse-redis-cluster'
  | 'raw-sse'
  | 'raw-ws'
  | 'raw-trpc-sse'
  | 'raw-trpc-ws'
  | 'trpc-ws-min'
  | 'trpc-sse-min'
  | 'openai-upstream'
  | 'sluice-proxy-openai'
  | 'sluice-proxy-sse'
  | 'sluice-proxy-trpc-ws';

export interface Target {
  readonly name: TargetName;
  readonly label: string;
  readonly sluice: boolean;
  /** Entry file of the server process, relative to the repository root. */
  readonly entry: string;
  /** Baselines this target's figures are divided by, the main one first. */
  readonly baselines: readonly TargetName[];
  /** The load generator's client. */
  client(baseUrl: string): LoadClient;
  /**
   * Checked once the server is up: a reason to skip this target (for instance a route that is not
   * there yet), or undefined to go ahead.
   */
  probe?(baseUrl: string): Promise<string | undefined>;
  /** Extra server environment, or a reason to skip this target (resolved before the server starts). */
  env?(): Promise<Readonly<Record<string, string>> | string>;
  /** The scenarios this target runs in (all when absent). */
  readonly scenarios?: RegExp;
  /**
   * Measured for reference, not as the baseline of a target of issue 6 (minimal tRPC servers, the
   * Redis store): left out of scenarios that run only the compared targets (Scenario.comparedOnly).
   */
  readonly reference?: boolean;
  /**
   * Runs in front of the bench's fake OpenAI-compatible upstream (`bench/baselines/openai-upstream.ts`),
   * started as a process of its own with the target's server and stopped with it; the server gets
   * the env this returns for the upstream's base URL (`.../v1`).
   */
  upstreamEnv?(upstreamBaseUrl: string): Readonly<Record<string, string>>;
}

/** The fake upstream's entry, and the model id it serves. */
export const UPSTREAM_ENTRY = 'bench/baselines/openai-upstream.ts';
export const UPSTREAM_MODEL = 'bench-upstream';

/** Sluice with LLM_PROVIDER=openai in front of the fake upstream. */
const proxying = (upstreamBaseUrl: string): Readonly<Record<string, string>> => ({
  LLM_PROVIDER: 'openai',
  OPENAI_BASE_URL: upstreamBaseUrl,
  LLM_MODEL: UPSTREAM_MODEL,
});

/** Sluice on Redis, with `workers` processes on one port (Node cluster). */
function onRedis(workers: number): () => Promise<Readonly<Record<string, string>> | string> {
  return async () => {
    const url = await benchRedisUrl();
    return url ? { REDIS_URL: url, WORKERS: String(workers) } : 'redis-server is not installed';
  };
}

const SLUICE = 'server/main.ts';

/** The model id Sluice's OpenAI route serves, read from `GET /v1/models` (the probe sets it). */
let openAIModel = 'simulated';

async function probeOpenAI(baseUrl: string): Promise<string | undefined> {
  const res = await fetch(`${baseUrl}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ model: openAIModel, messages: [{ role: 'user', content: 'probe' }], stream: true }),
  });
  await res.body?.cancel();
  if (res.status === 404) return 'POST /v1/chat/completions answers 404 (the OpenAI-compatible route is not there yet)';
  if (res.status !== 200) return `POST /v1/chat/completions answers ${res.status}`;
  const models = await fetch(`${baseUrl}/v1/models`);
  if (models.ok) {
    const list = (await models.json()) as { data?: Array<{ id?: string }> };
    openAIModel = list.data?.[0]?.id ?? openAIModel;
  }
  return undefined;
}

export const TARGETS: readonly Target[] = [
  { name: 'raw-sse', label: 'raw node:http SSE (baseline)', sluice: false, entry: 'bench/baselines/raw-sse.ts', baselines: [], client: sseRouteClient },
  { name: 'raw-ws', label: 'raw ws (baseline)', sluice: false, entry: 'bench/baselines/raw-ws.ts', baselines: [], client: rawWsClient },
  {
    name: 'raw-trpc-sse',
    label: 'raw node:http SSE, tRPC wire (baseline)',
    sluice: false,
    entry: 'bench/baselines/raw-trpc-sse.ts',
    baselines: ['raw-sse'],
    client: trpcSseClient,
    scenarios: /^(latency|throughput|held-|storm|smoke|capacity)/,
  },
  {
    name: 'raw-trpc-ws',
    label: 'raw ws, tRPC wire (baseline)',
    sluice: false,
    entry: 'bench/baselines/raw-trpc-ws.ts',
    baselines: ['raw-ws'],
    client: trpcWsClient,
    scenarios: /^(latency|throughput|held-|storm|smoke|capacity)/,
  },
  {
    name: 'trpc-ws-min',
    label: 'minimal tRPC WS (baseline)',
    sluice: false,
    entry: 'bench/baselines/trpc-ws.ts',
    baselines: ['raw-ws'],
    client: trpcWsClient,
    reference: true,
  },
  {
    name: 'trpc-sse-min',
    label: 'minimal tRPC SSE (baseline)',
    sluice: false,
    entry: 'bench/baselines/trpc-sse.ts',
    baselines: ['raw-sse'],
    client: trpcSseClient,
    reference: true,
  },
  { name: 'sluice-sse', label: 'Sluice SSE route', sluice: true, entry: SLUICE, baselines: ['raw-sse'], client: sseRouteClient },
  { name: 'sluice-trpc-ws', label: 'Sluice tRPC WS', sluice: true, entry: SLUICE, baselines: ['trpc-ws-min', 'raw-ws', 'raw-trpc-ws'], client: trpcWsClient },
  {
    name: 'sluice-trpc-sse',
    label: 'Sluice tRPC SSE',
    sluice: true,
    entry: SLUICE,
    baselines: ['raw-sse', 'raw-trpc-sse', 'trpc-sse-min'],
    client: trpcSseClient,
  },
  {
    name: 'sluice-openai',
    label: 'Sluice OpenAI route',
    sluice: true,
    entry: SLUICE,
    baselines: ['raw-sse'],
    client: (baseUrl) => openAIClient(baseUrl, openAIModel),
    probe: probeOpenAI,
  },
  // Where history lives: Sluice's targets above keep the default (SQLite under DATA_DIR); the same
  // route with history in memory is the floor the default store is held to, and PostgreSQL the
  // fleet's choice.
  {
    name: 'sluice-sse-memory',
    label: 'Sluice SSE route, STORE=memory',
    sluice: true,
    entry: SLUICE,
    baselines: ['raw-sse', 'sluice-sse'],
    client: sseRouteClient,
    env: async () => ({ STORE: 'memory' }),
    scenarios: /^(throughput|held-|smoke)/,
    reference: true,
  },
  {
    name: 'sluice-sse-postgres',
    label: 'Sluice SSE route, PostgreSQL history',
    sluice: true,
    entry: SLUICE,
    baselines: ['raw-sse', 'sluice-sse-memory'],
    client: sseRouteClient,
    env: async () => {
      const url = await benchPostgresUrl();
      return url ? { DATABASE_URL: url } : 'PostgreSQL is not installed';
    },
    scenarios: /^(throughput|held-|smoke)/,
    reference: true,
  },
  // Scaling beyond one core: the same route on Redis, with one worker and with one per core.
  {
    name: 'sluice-sse-redis',
    label: 'Sluice SSE route, Redis store',
    sluice: true,
    entry: SLUICE,
    baselines: ['raw-sse'],
    client: sseRouteClient,
    env: onRedis(1),
    scenarios: /^(throughput|held-|smoke)/,
    reference: true,
  },
  {
    name: 'sluice-sse-cluster',
    label: 'Sluice SSE route, Redis, 2 workers',
    sluice: true,
    entry: SLUICE,
    baselines: ['sluice-sse-redis', 'raw-sse'],
    client: sseRouteClient,
    env: onRedis(2),
    scenarios: /^(throughput|held-|smoke)/,
    reference: true,
  },
  // Redis beyond one server: the same route on a Redis Cluster of three masters (a reply's keys on
  // the shard of its id, the events of one turn one script call per slot, followers woken by
  // sharded pub/sub), one worker.
  {
    name: 'sluice-sse-redis-cluster',
    label: 'Sluice SSE route, Redis Cluster (3 masters)',
    sluice: true,
    entry: SLUICE,
    baselines: ['sluice-sse-redis', 'raw-sse'],
    client: sseRouteClient,
    env: async () => {
      const nodes = await benchRedisClusterNodes();
      return nodes ? { REDIS_CLUSTER_NODES: nodes } : 'redis-server or redis-cli is not installed';
    },
    scenarios: /^(throughput|held-|smoke)/,
    reference: true,
  },
  // The proxy path: Sluice in front of a fake OpenAI-compatible upstream, compared with that
  // upstream serving the same load directly (read by the same client as Sluice's OpenAI route).
  {
    name: 'openai-upstream',
    label: 'fake OpenAI upstream (baseline)',
    sluice: false,
    entry: UPSTREAM_ENTRY,
    baselines: [],
    client: (baseUrl) => openAIClient(baseUrl, UPSTREAM_MODEL),
  },
  {
    name: 'sluice-proxy-openai',
    label: 'Sluice OpenAI route, openai upstream',
    sluice: true,
    entry: SLUICE,
    baselines: ['openai-upstream', 'sluice-openai'],
    client: (baseUrl) => openAIClient(baseUrl, UPSTREAM_MODEL),
    upstreamEnv: proxying,
  },
  {
    name: 'sluice-proxy-sse',
    label: 'Sluice SSE route, openai upstream',
    sluice: true,
    entry: SLUICE,
    baselines: ['openai-upstream', 'sluice-sse'],
    client: sseRouteClient,
    upstreamEnv: proxying,
  },
  {
    name: 'sluice-proxy-trpc-ws',
    label: 'Sluice tRPC WS, openai upstream',
    sluice: true,
    entry: SLUICE,
    baselines: ['openai-upstream', 'sluice-trpc-ws'],
    client: trpcWsClient,
    upstreamEnv: proxying,
  },
];

/** The proxy path's targets: Sluice in front of the fake upstream, and that upstream measured alone. */
export function isProxyPath(target: Target): boolean {
  return target.upstreamEnv !== undefined || target.entry === UPSTREAM_ENTRY;
}

/** Names that stand for several targets in `--targets`. */
export const TARGET_GROUPS: Readonly<Record<string, readonly TargetName[]>> = {
  proxy: ['openai-upstream', 'sluice-proxy-openai', 'sluice-proxy-sse', 'sluice-proxy-trpc-ws'],
};

export const TARGET_NAMES: readonly TargetName[] = TARGETS.map((t) => t.name);

export function targetByName(name: string): Target {
  const target = TARGETS.find((t) => t.name === name);
  if (!target) throw new Error(`unknown target "${name}" (known: ${TARGET_NAMES.join(', ')})`);
  return target;
}
