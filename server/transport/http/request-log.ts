import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import type { Metrics } from '../../observability/metrics.ts';
import { rejectionOf } from './json-io.ts';

export interface RequestLogContext {
  readonly logger: Logger;
  readonly metrics: Metrics;
  /** The client's address, read when the request arrives: a socket that is gone by the end no longer knows its peer. */
  readonly clientIp: string | undefined;
  /** The request's owner once it is authenticated. */
  readonly ownerOf: (req: IncomingMessage) => string | undefined;
}

/**
 * One line per request when its response closes, and the rejection it carried counted. Never the
 * query (tRPC puts the message there), the body or the key.
 */
export function logWhenClosed(req: IncomingMessage, res: ServerResponse, context: RequestLogContext): void {
  const startedAt = performance.now();
  // As received: a HEAD is served as a GET (dispatch.ts), and logged as what it was.
  const method = req.method;
  res.once('close', () => {
    const rejection = rejectionOf(res);
    const reason = rejection && (rejection.reason ?? rejection.code);
    if (reason) context.metrics.rejected(reason);
    // The client was told "Internal error" and no more: the log gets what failed, once, whichever
    // step of the request it was.
    if (rejection?.code === 'internal') context.logger.error({ err: rejection.cause ?? rejection, method, path: pathOf(req) }, 'request failed');
    context.logger.info(
      {
        method,
        path: pathOf(req),
        status: res.statusCode,
        durationMs: Math.round(performance.now() - startedAt),
        owner: context.ownerOf(req),
        clientIp: context.clientIp,
        ...(reason ? { reason } : {}),
        ...(res.writableFinished ? {} : { aborted: true }),
      },
      'request',
    );
  });
}

/**
 * The line of an upgrade refused before a WebSocket exists (a page of another site, another path),
 * which no response's close would write, and its rejection counted: as any request's.
 */
export function logRefusedUpgrade(req: IncomingMessage, status: number, reason: string, context: RequestLogContext): void {
  context.metrics.rejected(reason);
  context.logger.info({ method: req.method, path: pathOf(req), status, durationMs: 0, clientIp: context.clientIp, reason }, 'request');
}

/** Characters of a path a line keeps: a request's line is up to 16 KB, and anyone can send one. */
const MAX_LOGGED_PATH = 512;

/** Never the query: tRPC puts the message there. */
const pathOf = (req: IncomingMessage): string => {
  const path = (req.url ?? '/').split('?', 1)[0]!;
  return path.length > MAX_LOGGED_PATH ? `${path.slice(0, MAX_LOGGED_PATH)}…` : path;
};
