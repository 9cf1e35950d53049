import type { AddressInfo } from 'node:net';
import { pino, type Logger } from 'pino';
import type { Config } from './config.ts';
import { ChatService } from './core/chat-service.ts';
import type { Provider } from './core/providers/provider.ts';
import { createProvider, servedModelId } from './core/providers/create-provider.ts';

import { createStore } from './core/store/create-store.ts';
import type { Store } from './core/store/store.ts';
import { RedisStore } from './core/store/redis-store.ts';
import { createHttpServer, type HttpServer } from './transport/http/server.ts';

export interface SluiceOverrides {
  readonly provider?: Provider;
  readonly store?: Store;
  readonly logger?: Logger;
}

export interface Sluice {
  readonly service: ChatService;
  readonly store: Store;
  readonly logger: Logger;
  readonly http: HttpServer;
  /** Starts listening; resolves with the bound port (useful with PORT=0). */
  listen(): Promise<{ port: number; url: string }>;
  /** Stops new streams, ends running ones (partials stored), closes sockets and the store. Safe to call twice. */
  close(): Promise<void>;
}

/** The composition root: configuration in, a wired server out. */
export function createSluice(config: Config, overrides: SluiceOverrides = {}): Sluice {
  const logger = overrides.logger ?? pino({ level: config.LOG_LEVEL, base: { service: 'sluice' } });
  const store = overrides.store ?? createStore(config, logger);
  const provider = overrides.provider ?? createProvider(config, logger);

  const service = new ChatService({
    store,
    provider,
    logger,
    resumeGraceMs: config.RESUME_GRACE_MS,
    eventLogTtlMs: config.EVENT_LOG_TTL_MS,
    maxMessageChars: config.MAX_MESSAGE_CHARS,
    livenessTtlMs: config.LIVENESS_TTL_MS,
  });
  const http = createHttpServer({
    service,
    logger,
    maxBodyBytes: config.MAX_BODY_BYTES,
    ssePingMs: config.SSE_PING_MS,
    wsEnabled: config.WS_ENABLED,
    modelId: servedModelId(config),

  });

  let closing: Promise<void> | undefined;
  return {
    service,
    store,
    logger,
    http,
    listen: async () => {
      // Redis may be down at start-up: serve anyway (requests get 503s) and recover when it is back.
      if (store instanceof RedisStore && !(await store.ready(3000))) {
        logger.warn('redis is not reachable yet; requests get 503 until it is');
      }
      return new Promise((resolve, reject) => {
        http.server.once('error', reject);
        http.server.listen(config.PORT, config.HOST, () => {
          http.server.off('error', reject);
          const { port } = http.server.address() as AddressInfo;
          const host = config.HOST.includes(':') ? `[${config.HOST}]` : config.HOST;
          resolve({ port, url: `http://${host}:${port}` });
        });
      });
    },
    close: () => {
      closing ??= (async () => {
        await service.close();
        await http.close();
        await store.close();
      })();
      return closing;
    },
  };
}
