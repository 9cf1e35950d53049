import { z } from 'zod';
import { jwksUrlProblem } from './core/auth/jwks-url.ts';
import { basicAuthorization } from './core/providers/url-credentials.ts';
import { parseHostPorts } from './core/store/redis/topology.ts';
import { parseTrustedProxies } from './net/client-ip.ts';
import { parseAllowedHosts } from './net/hosts.ts';
import { parseAllowedOrigins } from './net/origins.ts';

const int = (min: number, max = Number.MAX_SAFE_INTEGER) => z.coerce.number().int().min(min).max(max);
const bool = z.enum(['true', 'false', '1', '0']).transform((v) => v === 'true' || v === '1');
/** A string that `parse` accepts; its error's message is the setting's. */
const parsedBy = (parse: (value: string) => unknown) =>
  z.string().superRefine((value, ctx) => {
    try {
      parse(value);
    } catch (error) {
      ctx.addIssue({ code: 'custom', message: (error as Error).message });
    }
  });
const hostPorts = parsedBy(parseHostPorts);

/**
 * Every setting Sluice reads, with its default. Read once at start-up (environment variables, or
 * flags that mirror them: `--sim-delay-ms 0` sets SIM_DELAY_MS), validated here and nowhere else.
 */
export const ConfigSchema = z
  .object({
    PORT: int(0, 65535).default(8000).describe('port for everything (HTTP, SSE, WebSocket)'),
    WORKERS: int(0, 256).default(1).describe('server processes sharing the port (Node cluster); 0: one per core; more than 1 needs REDIS_URL'),
    HOST: z.string().min(1).default('127.0.0.1').describe('interface to listen on (0.0.0.0 in containers)'),
    LISTEN_BACKLOG: int(1, 65535)
      .default(4096)
      .describe(
        'connections the kernel holds for Sluice before it accepts them (capped by `net.core.somaxconn`): beyond it, a burst of connections (a reconnect storm) is dropped and retried by TCP a second later',
      ),
    MAX_CONNECTIONS: int(1, 1_000_000)
      .default(20_000)
      .describe('connections one process holds at most, WebSockets and streams included; those beyond are closed at once (raise `ulimit -n` above it)'),
    REQUEST_TIMEOUT_MS: int(100, 3_600_000)
      .default(30_000)
      .describe('how long a client may take to send a whole request, headers and body; 408 and the connection closed after (a response may stream for longer)'),
    KEEP_ALIVE_TIMEOUT_MS: int(100, 3_600_000)
      .default(65_000)
      .describe(
        "how long an idle keep-alive connection is kept for the client's next request; keep it longer than the idle timeout of any proxy or load balancer in front (nginx's upstream keepalive: 60 s), or a request may be sent on a connection Sluice is closing",
      ),
    TRUSTED_PROXIES: parsedBy(parseTrustedProxies)
      .optional()
      .describe(
        "proxies whose `X-Forwarded-For` is believed, as comma-separated IPs or CIDRs (or `loopback`): only a request from one of them gets its client IP (`clientIp` in the logs) from that header (unset: none; the socket's peer is the client)",
      ),
    ALLOWED_ORIGINS: parsedBy(parseAllowedOrigins)
      .optional()
      .describe(
        "browser origins besides the server's own that may call it (CORS) and open WebSockets, comma-separated (`https://app.example.com,http://localhost:5173`), or `*` for any; other sites' pages are refused (403). Requests without an `Origin` (programs, not browsers) are not affected",
      ),
    ALLOWED_HOSTS: parsedBy(parseAllowedHosts)
      .optional()
      .describe(
        "the names Sluice is reached by (the `Host` of requests), comma-separated hostnames (`chat.example.com`), or `*`; a request to any other name is refused (403), a program's too (a rebound page's GET often carries neither Origin nor Fetch Metadata), which stops DNS rebinding (a site whose name is pointed at Sluice's address); an IP address (a scraper's, a probe's) is always accepted, as is `/health` and `/ready` under any name. Unset: `localhost`, `*.localhost`, `127.0.0.1` and `[::1]` when HOST is a loopback address and TRUSTED_PROXIES is unset, else any (behind a proxy, list the site's names)",
      ),
    LLM_PROVIDER: z.enum(['simulated', 'openai']).default('simulated').describe('`simulated` or `openai` (any OpenAI-compatible API)'),
    SIM_DELAY_MS: int(0, 60_000).default(50).describe("the simulator's delay between tokens"),
    SIM_FIRST_TOKEN_MS: int(0, 600_000)
      .optional()
      .describe("the simulator's wait before its first token (unset: SIM_DELAY_MS); real models take longer to start than to continue"),
    OPENAI_BASE_URL: z.url().optional().describe('base URL of the OpenAI-compatible upstream (`https://user:password@host/v1`: sent as Basic auth)'),
    OPENAI_API_KEY: z
      .string()
      // It goes into a header: a trailing newline (from a file, say) would fail every call as a connection error.
      .refine((key) => ![...key].some((c) => c < ' ' || c === '\u007f'), 'must not hold a line break or control character')
      .optional()
      .describe('API key for the upstream'),
    LLM_MODEL: z.string().min(1).optional().describe('model name sent upstream (required when LLM_PROVIDER=openai)'),
    LLM_TEMPERATURE: z.coerce.number().min(0).max(2).optional().describe('sampling temperature sent upstream (unset: the upstream default)'),
    LLM_MAX_TOKENS: int(1, 10_000_000).optional().describe('`max_tokens` sent upstream (unset: the upstream default)'),
    LLM_SYSTEM_PROMPT: z.string().min(1).optional().describe('system message put before every conversation sent upstream'),
    UPSTREAM_INCLUDE_USAGE: bool
      .default(true)
      .describe('ask the upstream for token usage (`stream_options.include_usage`); turn off for servers that reject it'),
    UPSTREAM_FIRST_TOKEN_TIMEOUT_MS: int(0, 3_600_000)
      .default(60_000)
      .describe('how long the upstream may take to send its first token, or a reasoning model its first thought (`reasoning_content`) (0: no limit)'),
    UPSTREAM_STALL_TIMEOUT_MS: int(0, 3_600_000).default(30_000).describe('how long the upstream may go quiet between tokens (0: no limit)'),
    UPSTREAM_RETRIES: int(0, 10).default(0).describe('retries of a failed upstream call before its first token (never after); 0 for non-idempotent setups'),
    UPSTREAM_RETRY_BASE_MS: int(1, 60_000).default(500).describe('first retry delay; doubles each retry, with jitter'),
    UPSTREAM_MAX_CONNECTIONS: int(1, 65535)
      .default(4096)
      .describe('connections to the upstream at most (a keep-alive pool; replies beyond it wait for a free one)'),
    UPSTREAM_KEEP_ALIVE_MS: int(1, 600_000)
      .default(4000)
      .describe("how long an idle upstream connection is kept for the next reply (an upstream's `Keep-Alive: timeout` hint wins)"),
    UPSTREAM_RETRY_MAX_DELAY_MS: int(0, 600_000)
      .default(10_000)
      .describe("longest wait before a retry: backoff stops growing there; an upstream's retry-after asking for longer is not retried, its hint is passed on"),
    SIM_TOKENIZER: z
      .enum(['words', 'bpe'])
      .default('words')
      .describe('how the simulator splits its reply: `words` (the documented template) or `bpe` (real o200k_base tokens)'),
    SIM_USAGE: bool.default(false).describe('the simulator reports token usage (prompt and completion counts)'),

    REDIS_URL: z
      .string()
      .regex(/^rediss?:\/\//, 'must start with redis:// or rediss://')
      .optional()
      .describe('when set, history, stream logs and limits live in Redis (several instances can share it)'),
    REDIS_PREFIX: z.string().min(1).default('sluice:').describe('prefix of every Redis key and channel'),
    REDIS_SENTINELS: hostPorts
      .optional()
      .describe(
        'instead of REDIS_URL: comma-separated `host:port` of Redis Sentinels; the primary they name (REDIS_SENTINEL_MASTER) is followed through failovers',
      ),
    REDIS_SENTINEL_MASTER: z.string().min(1).max(200).optional().describe('the name the Sentinels monitor the primary under (`sentinel monitor <name> ...`)'),
    REDIS_CLUSTER_NODES: hostPorts
      .optional()
      .describe('instead of REDIS_URL: comma-separated `host:port` of a few nodes of a Redis Cluster (the rest are discovered)'),
    REDIS_TLS_CA_FILE: z
      .string()
      .min(1)
      .optional()
      .describe(
        "PEM file of the authorities that sign the Redis servers' certificates: every Redis connection uses TLS and trusts them (REDIS_URL must be `rediss://`; Sentinels and Cluster nodes are reached over TLS too)",
      ),
    REDIS_WAIT_REPLICAS: int(0, 16)
      .optional()
      .describe(
        'replicas that must confirm (WAIT) the writes that start and end a turn before they count as done, so that a failover cannot lose them (unset: 1 with REDIS_SENTINELS, else 0; not with REDIS_CLUSTER_NODES)',
      ),
    REDIS_OUTAGE_WAIT_MS: int(0, 600_000)
      .optional()
      .describe(
        "how long a running reply, and a listener following one, wait for Redis to come back (a failover) before ending with `unavailable` (unset: 10000 with REDIS_SENTINELS or REDIS_CLUSTER_NODES, else 1500); a reply waits at least 1000 (a Redis command's own timeout) and 250 more",
      ),
    STORE: z
      .enum(['sqlite', 'memory', 'redis', 'postgres'])
      .default('sqlite')
      .describe(
        'where history lives: `sqlite` (embedded, durable), `memory` (nothing kept across restarts), `redis`, `postgres`; when unset, `postgres` with DATABASE_URL, else `redis` with a Redis (REDIS_URL, REDIS_SENTINELS or REDIS_CLUSTER_NODES), else `sqlite`',
      ),
    DATA_DIR: z.string().min(1).default('./data').describe('where the embedded store (`STORE=sqlite`) keeps its database, `history.db`; created on start'),
    DATABASE_URL: z
      .string()
      .regex(/^postgres(ql)?:\/\//, 'must start with postgres:// or postgresql://')
      .optional()
      .describe('`postgres://...`: history lives in PostgreSQL (live streams, locks and signals stay in Redis when REDIS_URL is set too)'),
    SESSION_TTL_DAYS: z.coerce
      .number()
      .min(0)
      .max(36_500)
      .default(30)
      .describe('a session untouched this long is deleted, whatever the store (0: kept forever)'),
    MEMORY_MAX_SESSIONS: int(1)
      .default(100_000)
      .describe('with `STORE=memory`: sessions kept in the process at most; beyond it the least recently used one is dropped'),
    API_KEYS_FILE: z
      .string()
      .optional()
      .describe('file of API keys, one a line (blank lines and # comments ignored); when set, every request needs one; read again on SIGHUP'),
    API_KEYS: z
      .string()
      // Set, it makes every request need a key: a list without one must not leave the routes open.
      .refine((list) => list.split(',').some((key) => key.trim() !== ''), 'holds no key (a comma-separated list of keys)')
      .optional()
      .describe('API keys as a comma-separated list (in addition to API_KEYS_FILE)'),
    AUTH_JWKS_URL: z
      .url()
      .superRefine((url, ctx) => {
        // Not a URL at all is `url()`'s to say.
        const problem = URL.canParse(url) ? jwksUrlProblem(new URL(url)) : undefined;
        if (problem) ctx.addIssue({ code: 'custom', message: problem });
      })
      .optional()
      .describe(
        "end-user tokens (JWTs from the app's identity provider) are accepted, verified with the keys of this JWKS (https://, or http:// on localhost; fetched, cached, fetched again for an unknown `kid`)",
      ),
    AUTH_JWT_PUBLIC_KEY: z
      .string()
      .optional()
      .describe('instead of a JWKS: the PEM public key (or certificate) that verifies end-user tokens (line ends may be written `\\n`)'),
    AUTH_JWT_SECRET: z.string().optional().describe('instead of a JWKS: the HMAC secret (at least 32 bytes) that verifies end-user tokens (HS256/384/512)'),
    AUTH_JWT_ISSUER: z.string().min(1).optional().describe("when set, a token's `iss` must be this"),
    AUTH_JWT_AUDIENCE: z.string().min(1).optional().describe("when set, a token's `aud` must name one of these (comma-separated)"),
    AUTH_JWT_OWNER_CLAIM: z
      .string()
      .regex(/^\S+$/, 'must be a claim name')
      .default('sub')
      .describe("the token's claim that names the user: each user has their own sessions, as each API key does"),
    RATE_LIMIT_PER_MINUTE: int(0).default(0).describe('requests a minute per key, across instances; 429 with Retry-After above (0: no limit)'),
    MAX_STREAMS_PER_KEY: int(0).default(0).describe('replies a key may have running at once, across instances; 429 above (0: no limit)'),
    MAX_WS_CONNECTIONS_PER_KEY: int(0).default(0).describe('WebSocket connections a key may hold at once, across instances (0: no limit)'),
    MAX_SESSIONS_PER_KEY: int(0)
      .default(10_000)
      .describe(
        'with keys or tokens on, sessions a key (or signed-in user) may hold, across instances: a message that would start a new session beyond it is refused with 429 until one is deleted (`DELETE /v1/sessions/{id}`, `chat.deleteSession`) or expires (SESSION_TTL_DAYS); messages in the sessions it holds never are, and no history is dropped to make room (0: no limit)',
      ),
    MAX_HISTORY_MESSAGES: int(2).default(1000).describe('messages kept per session; the oldest are trimmed'),
    RESUME_GRACE_MS: int(0, 3_600_000)
      .default(5000)
      .describe('how long a generation whose listeners all left keeps running, waiting for a resume (0: abort at once)'),
    LIVENESS_TTL_MS: int(300, 600_000)
      .default(10_000)
      .describe(
        "a running reply's liveness mark expires this long after its instance stops refreshing it: a killed instance's replies are then ended as `interrupted` (by a client resuming, or by the session's next message)",
      ),
    EVENT_LOG_TTL_MS: int(0, 86_400_000).default(300_000).describe('how long the event log of a finished generation stays resumable'),
    RESUMABLE_MAX_CHARS: int(0, 1_000_000_000)
      .default(64_000_000)
      .describe(
        'characters of finished replies one instance keeps in memory for resumes (for EVENT_LOG_TTL_MS), each counting 1,000 more for its bookkeeping; beyond it the oldest go first, and resuming them is a 404 (the reply is in history)',
      ),
    MAX_BODY_BYTES: int(1, 64 * 1024 * 1024)
      .default(64 * 1024)
      .describe('largest accepted request body (413 above)'),
    MAX_MESSAGE_CHARS: int(1, 10_000_000).default(32_000).describe('longest accepted user message'),
    MAX_REPLY_CHARS: int(1_000, 100_000_000)
      .default(1_000_000)
      .describe('longest reply kept: past it the model is stopped and the reply ends there, with finish reason `length`'),
    MAX_REPLY_MS: int(0, 86_400_000)
      .default(1_800_000)
      .describe(
        'longest time a reply may run from its start (0: no limit): past it the model is stopped and the reply fails `upstream_timeout`, keeping what it has',
      ),
    WS_MAX_MESSAGE_BYTES: int(1024)
      .default(1024 * 1024)
      .describe('largest WebSocket message accepted (the connection is closed above)'),
    WS_MAX_BATCH: int(1, 1000)
      .default(16)
      .describe(
        'calls one tRPC batch may carry (tRPC batches calls made together): a WebSocket message, or a request to `/trpc/a,b,...?batch=1`; a bigger batch is refused whole (BAD_REQUEST, 400 over HTTP); at least WS_MAX_SUBSCRIPTIONS, since a reconnecting wsLink sends its subscriptions again in one message',
      ),
    MAX_BATCH_ANSWER_CHARS: int(1, 1_000_000_000)
      .default(16_000_000)
      .describe(
        'characters of history one HTTP request to tRPC (a batch of chat.history calls) is answered with; the calls after are refused with 413 PAYLOAD_TOO_LARGE (one call is always answered)',
      ),
    MAX_HELD_ANSWER_BYTES: int(1, 10_000_000_000)
      .default(128_000_000)
      .describe(
        'bytes of answers written whole (pages of history, completions answered at once) that one process holds for readers that have not taken them yet (answers of 64 KiB or less are not counted); beyond it a long answer is refused (503, retried soon), and beyond a quarter of it for one key (429; without keys there is one owner, with no share): readers that take nothing cannot make the server hold their answers without bound until the send timeout',
      ),
    WS_MAX_SUBSCRIPTIONS: int(1, 10_000)
      .default(16)
      .describe('subscriptions one WebSocket connection may hold at once; the one beyond is refused with TOO_MANY_REQUESTS'),
    WS_AUTH_TIMEOUT_MS: int(100, 600_000)
      .default(5000)
      .describe(
        'with API keys or tokens on, a WebSocket that has not shown a valid key or token (in its connection params) within this time is closed, its calls until then refused with UNAUTHORIZED; one whose key or token ended (expired, removed) is closed this long after it was told to reconnect',
      ),
    WS_PING_MS: int(100, 3_600_000).default(30_000).describe('quiet time after which the server pings a WebSocket client'),
    WS_PONG_WAIT_MS: int(100, 3_600_000).default(10_000).describe('how long a pinged WebSocket client has to answer before it is cut off'),
    SEND_TIMEOUT_MS: int(100, 3_600_000)
      .default(30_000)
      .describe(
        "a reader that takes nothing of what is queued for it for this long is disconnected: a stream's (its reply follows the resume window) or any answer's",
      ),
    STREAM_HIGH_WATER_BYTES: int(1024)
      .default(64 * 1024)
      .describe('bytes buffered for one reader before the server waits for it to drain'),
    SSE_PING_MS: int(0, 3_600_000).default(15_000).describe('interval of keep-alive comments on SSE streams (0: none)'),
    WS_ENABLED: bool.default(true).describe('accept tRPC over WebSocket at /trpc'),
    SHUTDOWN_DRAIN_MS: int(0, 600_000).default(10_000).describe('on SIGTERM, how long running replies may take to finish'),
    LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info').describe('pino level'),
  })
  .superRefine((c, ctx) => {
    if (c.LLM_PROVIDER === 'openai' && !c.OPENAI_BASE_URL) {
      ctx.addIssue({ code: 'custom', path: ['OPENAI_BASE_URL'], message: 'is required when LLM_PROVIDER=openai' });
    }
    if (c.LLM_PROVIDER === 'openai' && !c.LLM_MODEL) {
      ctx.addIssue({ code: 'custom', path: ['LLM_MODEL'], message: 'is required when LLM_PROVIDER=openai' });
    }
    if (c.OPENAI_BASE_URL && !/^https?:\/\//i.test(c.OPENAI_BASE_URL)) {
      ctx.addIssue({ code: 'custom', path: ['OPENAI_BASE_URL'], message: 'must be an http:// or https:// URL' });
    }
    if (c.OPENAI_BASE_URL && c.OPENAI_API_KEY !== undefined && URL.canParse(c.OPENAI_BASE_URL)) {
      const { username, password } = new URL(c.OPENAI_BASE_URL);
      if (username || password) {
        // Both would be the one Authorization header: Basic for the URL's, Bearer for the key.
        ctx.addIssue({ code: 'custom', path: ['OPENAI_BASE_URL'], message: 'carries a user and password, and OPENAI_API_KEY is set: use one of them' });
      }
    }
    const tokenKeys = (['AUTH_JWKS_URL', 'AUTH_JWT_PUBLIC_KEY', 'AUTH_JWT_SECRET'] as const).filter((name) => c[name] !== undefined);
    if (tokenKeys.length > 1) ctx.addIssue({ code: 'custom', path: [tokenKeys[1]!], message: `set only one of ${tokenKeys.join(', ')}` });
    for (const name of ['AUTH_JWT_ISSUER', 'AUTH_JWT_AUDIENCE'] as const) {
      if (c[name] !== undefined && tokenKeys.length === 0) {
        ctx.addIssue({ code: 'custom', path: [name], message: 'needs AUTH_JWKS_URL, AUTH_JWT_PUBLIC_KEY or AUTH_JWT_SECRET' });
      }
    }
    if (c.WS_MAX_BATCH < c.WS_MAX_SUBSCRIPTIONS) {
      ctx.addIssue({
        code: 'custom',
        path: ['WS_MAX_BATCH'],
        message: `must be at least WS_MAX_SUBSCRIPTIONS (${c.WS_MAX_SUBSCRIPTIONS}): a reconnecting tRPC wsLink sends a connection's subscriptions again in one message`,
      });
    }
    if (c.STORE === 'postgres' && !c.DATABASE_URL) ctx.addIssue({ code: 'custom', path: ['DATABASE_URL'], message: 'is required when STORE=postgres' });
    if (c.STORE === 'redis' && !usesRedis(c))
      ctx.addIssue({ code: 'custom', path: ['REDIS_URL'], message: 'is required when STORE=redis (or REDIS_SENTINELS, or REDIS_CLUSTER_NODES)' });
    checkRedis(c, ctx);
  });

export type Config = z.infer<typeof ConfigSchema>;

/** Whether the configuration names a Redis (a URL, Sentinels or a Cluster). */
export function usesRedis(c: Pick<Config, 'REDIS_URL' | 'REDIS_SENTINELS' | 'REDIS_CLUSTER_NODES'>): boolean {
  return Boolean(c.REDIS_URL || c.REDIS_SENTINELS || c.REDIS_CLUSTER_NODES);
}

/**
 * The operator's secrets that the configuration holds, for the logs to leave out: the upstream's
 * key, the JWT secret, and the passwords in the store and upstream URLs (as written and decoded).
 */
export function secretsOf(c: Config): string[] {
  const secrets = [c.OPENAI_API_KEY, c.AUTH_JWT_SECRET];
  for (const url of [c.REDIS_URL, c.DATABASE_URL, c.OPENAI_BASE_URL]) {
    if (!url) continue;
    let parsed: URL | undefined;
    try {
      parsed = new URL(url);
    } catch {
      // Not a URL the schema let through: nothing to take from it.
    }
    const password = parsed?.password;
    if (!parsed || !password) continue;
    secrets.push(password);
    try {
      secrets.push(decodeURIComponent(password));
    } catch {
      // A `%` that starts no escape: the password as written is all there is.
    }
    // The upstream's is sent as Basic auth: an upstream that echoes the header shows it in base64.
    if (url === c.OPENAI_BASE_URL) secrets.push(basicAuthorization(parsed)!.slice('Basic '.length));
  }
  return secrets.filter((s): s is string => typeof s === 'string' && s.length > 0);
}

type RedisSettings = {
  readonly [K in 'REDIS_URL' | 'REDIS_SENTINELS' | 'REDIS_SENTINEL_MASTER' | 'REDIS_CLUSTER_NODES' | 'REDIS_TLS_CA_FILE']?: string | undefined;
} & {
  readonly REDIS_WAIT_REPLICAS?: number | undefined;
};

/** One way to reach Redis at most, and the settings each needs. */
function checkRedis(c: RedisSettings, ctx: z.core.$RefinementCtx): void {
  const ways = (['REDIS_URL', 'REDIS_SENTINELS', 'REDIS_CLUSTER_NODES'] as const).filter((name) => c[name]);
  if (ways.length > 1) ctx.addIssue({ code: 'custom', path: [ways[1]!], message: `set one of ${ways.join(', ')}, not several` });
  if (c.REDIS_SENTINELS && !c.REDIS_SENTINEL_MASTER)
    ctx.addIssue({ code: 'custom', path: ['REDIS_SENTINEL_MASTER'], message: 'is required with REDIS_SENTINELS' });
  if (c.REDIS_SENTINEL_MASTER && !c.REDIS_SENTINELS)
    ctx.addIssue({ code: 'custom', path: ['REDIS_SENTINELS'], message: 'is required with REDIS_SENTINEL_MASTER' });
  if (c.REDIS_TLS_CA_FILE && c.REDIS_URL && !c.REDIS_URL.startsWith('rediss://')) {
    ctx.addIssue({ code: 'custom', path: ['REDIS_URL'], message: 'must be rediss:// (TLS) when REDIS_TLS_CA_FILE is set' });
  }
  if (c.REDIS_WAIT_REPLICAS && c.REDIS_CLUSTER_NODES) {
    ctx.addIssue({ code: 'custom', path: ['REDIS_WAIT_REPLICAS'], message: 'is not supported with REDIS_CLUSTER_NODES' });
  }
}
export type ConfigInput = z.input<typeof ConfigSchema>;

export class ConfigError extends Error {
  override readonly name = 'ConfigError';
}

/** `--sim-delay-ms=0` or `--sim-delay-ms 0` → `SIM_DELAY_MS=0`; a bare `--flag` means `true`. */
export function flagsToEnv(argv: readonly string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (!arg.startsWith('--')) throw new ConfigError(`unexpected argument "${arg}" (flags look like --port 8000)`);
    const eq = arg.indexOf('=');
    const name = (eq === -1 ? arg.slice(2) : arg.slice(2, eq)).replaceAll('-', '_').toUpperCase();
    let value: string;
    if (eq !== -1) value = arg.slice(eq + 1);
    else if (i + 1 < argv.length && !argv[i + 1]!.startsWith('--')) value = argv[++i]!;
    else value = 'true';
    out[name] = value;
  }
  return out;
}

/** Parses configuration from environment-like input; throws a ConfigError naming each bad setting. */
export function loadConfig(env: Record<string, string | undefined>, argv: readonly string[] = []): Config {
  const flags = flagsToEnv(argv);
  const known = new Set(Object.keys(ConfigSchema.shape));
  for (const name of Object.keys(flags)) {
    if (!known.has(name)) throw new ConfigError(`unknown flag --${name.toLowerCase().replaceAll('_', '-')}`);
  }
  const input: Record<string, string> = {};
  for (const name of known) {
    const value = flags[name] ?? env[name];
    // Blank is unset, as empty is: `Number(' ')` would make it 0 (for a timeout: no limit).
    if (value !== undefined && value.trim() !== '') input[name] = value;
  }
  const parsed = ConfigSchema.safeParse(input);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((i) => `${i.path.join('.') || 'config'}: ${i.message}`);
    throw new ConfigError(`invalid configuration: ${problems.join('; ')}`);
  }
  const c = parsed.data;
  // Unset, the store follows what is configured: a database, else Redis, else the embedded one.
  if (input.STORE === undefined) c.STORE = c.DATABASE_URL ? 'postgres' : usesRedis(c) ? 'redis' : 'sqlite';
  return c;
}
