import cluster from 'node:cluster';
import type { AddressInfo } from 'node:net';
import { within } from '../shared/within.ts';
import type { Logger } from 'pino';
import { secretsOf, type Config } from './config.ts';
import { ChatService } from './core/chat-service.ts';
import type { Credentials } from './core/credentials.ts';
import type { Provider } from './core/providers/provider.ts';
import { Leases } from './core/leases.ts';
import { RateLimiter } from './core/rate-limiter.ts';
import { preloadTokenizer } from './core/usage.ts';
import type { Store } from './core/store/store.ts';
import { credentialsFrom } from './wiring/credentials.ts';
import { providerFrom, servedModelId } from './wiring/provider.ts';
import { sessionTtlMs, storeFrom } from './wiring/store.ts';
import { startRetention } from './core/store/history/retention.ts';
import { Admission } from './transport/admission.ts';
import { createHttpServer, type HttpServer } from './transport/http/server.ts';
import { parseTrustedProxies } from './net/client-ip.ts';
import { defaultAllowedHosts, isLoopbackHost, parseAllowedHosts } from './net/hosts.ts';
import { parseAllowedOrigins } from './net/origins.ts';
import { OriginPolicy } from './transport/http/origin-policy.ts';
import { createLogger } from './observability/logger.ts';
import { Metrics } from './observability/metrics.ts';

export interface SluiceOverrides {
  readonly provider?: Provider;
  /** Instead of the API keys and token settings of the configuration. */
  readonly credentials?: Credentials;
  readonly store?: Store;
  readonly logger?: Logger;
}

export interface Sluice {
  readonly service: ChatService;
  readonly admission: Admission;
  readonly store: Store;
  readonly logger: Logger;
  readonly http: HttpServer;
  readonly metrics: Metrics;
  /** Starts listening; resolves with the bound port (useful with PORT=0). */
  listen(): Promise<{ port: number; url: string }>;
  /**
   * Graceful stop (SIGTERM): new replies get 503 with Retry-After, WebSocket clients are told to
   * reconnect, running replies get SHUTDOWN_DRAIN_MS to finish, then close(). Safe to call twice.
   */
  shutdown(): Promise<void>;
  /** Ends running replies now (partials stored, listeners get the error event), closes sockets and the store. Safe to call twice. */
  close(): Promise<void>;
  /**
   * SIGHUP: reads API_KEYS_FILE again, so that a key is rotated without a restart; the keys in use
   * stay when the file cannot be used. Logs the outcome. WebSockets signed in with a removed key end.
   */
  reloadKeys(): void;
}

/** How often, while stopped replies still store their partials, the store is asked whether it answers. */
const STOP_GRACE_MS = 1000;

/**
 * The composition root: configuration in, a wired server out (once its store is open: a database's
 * schema is created or migrated first).
 */
export async function createSluice(config: Config, overrides: SluiceOverrides = {}): Promise<Sluice> {
  const logger = overrides.logger ?? createLogger(config.LOG_LEVEL, { service: 'sluice', pid: process.pid }, secretsOf(config));
  const configured = overrides.credentials ? undefined : credentialsFrom(config, logger);
  const credentials = overrides.credentials ?? configured!.credentials;
  // A worker of WORKERS answers a scrape with every worker's metrics (the service has one port).
  const metrics: Metrics = new Metrics((): number => service.runningCount, { clusterWide: cluster.isWorker });
  const provider = overrides.provider ?? providerFrom(config, logger);
  // Without keys every caller is the one anonymous owner: a cap would be the whole server's.
  const maxSessionsPerOwner = credentials.required ? config.MAX_SESSIONS_PER_KEY : 0;
  const store =
    overrides.store ??
    (await storeFrom(config, logger, {
      onSessionEvicted: () => metrics.sessionsEvicted('capacity'),
      preamble: provider.preamble,
      countsOwners: maxSessionsPerOwner > 0,
    }));
  const leases = new Leases({ store: store.leases, ttlMs: config.LIVENESS_TTL_MS, logger });

  // Usage estimates need the tokenizer's tables: loaded before the server listens, not on a reply.
  const tokenizer = preloadTokenizer().catch((error: unknown) =>
    logger.error({ err: error }, 'could not load the tokenizer; replies without usage from their provider will have none'),
  );
  const service: ChatService = new ChatService({
    observer: metrics,
    history: store.history,
    events: store.events,
    leases,
    signals: store.signals,
    provider,
    logger,
    resumeGraceMs: config.RESUME_GRACE_MS,
    eventLogTtlMs: config.EVENT_LOG_TTL_MS,
    resumableMaxChars: config.RESUMABLE_MAX_CHARS,
    maxMessageChars: config.MAX_MESSAGE_CHARS,
    maxReplyChars: config.MAX_REPLY_CHARS,
    maxReplyMs: config.MAX_REPLY_MS,
    presenceTtlMs: config.LIVENESS_TTL_MS,
    maxHistoryMessages: config.MAX_HISTORY_MESSAGES,
    maxStreamsPerOwner: config.MAX_STREAMS_PER_KEY,
    maxSessionsPerOwner,
  });
  const ttlMs = sessionTtlMs(config);
  const retention =
    ttlMs > 0 ? startRetention({ history: store.history, ttlMs, logger, onExpired: (count) => metrics.sessionsEvicted('idle', count) }) : undefined;
  const admission = new Admission({ service, credentials, rateLimiter: new RateLimiter(store.leases, config.RATE_LIMIT_PER_MINUTE) });
  const allowedHosts =
    config.ALLOWED_HOSTS === undefined ? defaultAllowedHosts(config.HOST, config.TRUSTED_PROXIES !== undefined) : parseAllowedHosts(config.ALLOWED_HOSTS);
  // Keys off is the quick start's setting, safe on a loopback address: said once where it is not.
  if (!credentials.required && !isLoopbackHost(config.HOST)) {
    logger.warn(
      `no credential is required and HOST=${config.HOST} is not a loopback address: anyone who can reach the port can use this server (set API_KEYS or AUTH_JWKS_URL)` +
        (allowedHosts === '*' ? ', and so can any web page whose name is made to point at it (DNS rebinding: set ALLOWED_HOSTS)' : ''),
    );
  }
  const http = createHttpServer({
    service,
    leases,
    logger,
    credentials,
    admission,
    metrics,
    modelId: servedModelId(config),
    maxBodyBytes: config.MAX_BODY_BYTES,
    maxBatchAnswerChars: config.MAX_BATCH_ANSWER_CHARS,
    maxHeldAnswerBytes: config.MAX_HELD_ANSWER_BYTES,
    ssePingMs: config.SSE_PING_MS,
    wsEnabled: config.WS_ENABLED,
    wsMaxMessageBytes: config.WS_MAX_MESSAGE_BYTES,
    wsPingMs: config.WS_PING_MS,
    wsPongWaitMs: config.WS_PONG_WAIT_MS,
    maxWsConnectionsPerKey: config.MAX_WS_CONNECTIONS_PER_KEY,
    wsMaxBatch: config.WS_MAX_BATCH,
    wsMaxSubscriptions: config.WS_MAX_SUBSCRIPTIONS,
    wsAuthTimeoutMs: config.WS_AUTH_TIMEOUT_MS,
    sendTimeoutMs: config.SEND_TIMEOUT_MS,
    highWaterBytes: config.STREAM_HIGH_WATER_BYTES,
    requestTimeoutMs: config.REQUEST_TIMEOUT_MS,
    keepAliveTimeoutMs: config.KEEP_ALIVE_TIMEOUT_MS,
    maxConnections: config.MAX_CONNECTIONS,
    isReady: async () => !service.draining && (await store.healthy()),
    trustedProxies: parseTrustedProxies(config.TRUSTED_PROXIES),
    origins: new OriginPolicy({ allowed: parseAllowedOrigins(config.ALLOWED_ORIGINS), hosts: allowedHosts }),
  });

  let closing: Promise<void> | undefined;
  let shuttingDown: Promise<void> | undefined;
  const close = (): Promise<void> => {
    closing ??= (async () => {
      service.beginDrain();
      // The replies are stopped and store their partials. A store that answers is waited for (its
      // own timeouts bound a write); one that does not (a frozen host) would hold them, and the
      // process, for ever: it is closed under them, which fails those writes (the drafts stay, read
      // as interrupted), and the replies end, their clients told.
      const stopped = service.close().then(() => true);
      while (!(await within(stopped, STOP_GRACE_MS, () => false))) {
        if (await within(store.healthy(), STOP_GRACE_MS, () => false)) continue;
        logger.warn({ store: store.kind }, 'replies are still storing what they said, and the store does not answer; closing it under them');
        await store.close();
        await stopped;
        break;
      }
      await http.close();
      await provider.close?.();
      retention?.stop();
      leases.close();
      await store.close();
    })();
    return closing;
  };
  return {
    service,
    admission,
    store,
    logger,
    http,
    metrics,
    listen: async () => {
      await tokenizer;
      // Redis may be down at start-up: serve anyway (requests get 503s) and recover when it is back.
      if (!(await store.ready(3000))) logger.warn({ store: store.kind }, 'the store is not reachable yet; requests get 503 until it is');
      return new Promise((resolve, reject) => {
        http.server.once('error', reject);
        http.server.listen({ port: config.PORT, host: config.HOST, backlog: config.LISTEN_BACKLOG }, () => {
          http.server.off('error', reject);
          const { port } = http.server.address() as AddressInfo;
          const host = config.HOST.includes(':') ? `[${config.HOST}]` : config.HOST;
          resolve({ port, url: `http://${host}:${port}` });
        });
      });
    },
    shutdown: () => {
      shuttingDown ??= (async () => {
        service.beginDrain();
        http.beginDrain();
        await service.drain(config.SHUTDOWN_DRAIN_MS);
        await close();
      })();
      return shuttingDown;
    },
    close,
    reloadKeys: () => {
      const keys = configured?.keys;
      if (!keys?.reloadable) {
        logger.info('SIGHUP: nothing to reload (the API keys come from no file)');
        return;
      }
      try {
        logger.info({ keys: keys.reload() }, 'reloaded API keys');
      } catch (error) {
        logger.error(`could not reload API keys (${(error as Error).message}); the keys in use stay`);
        return;
      }
      // What was let in with a key just removed is not let in any longer: its WebSockets end.
      http.recheckCredentials().catch((error: unknown) => logger.error({ err: error }, 'could not recheck the WebSockets after reloading API keys'));
    },
  };
}
