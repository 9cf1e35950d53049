import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Metrics } from '../../observability/metrics.ts';
import type { HttpConnections } from '../http/connections.ts';
import { normalizePath } from '../http/normalize-path.ts';
import { answerAndClose } from '../http/raw-answer.ts';
import type { OriginPolicy } from '../http/origin-policy.ts';
import type { TrpcWsServer } from './ws-server.ts';

export interface UpgradeOptions {
  readonly enabled: boolean;
  readonly origins: OriginPolicy;
  readonly metrics: Metrics;
  readonly connections: HttpConnections;
  readonly ws: TrpcWsServer;
}

/**
 * Upgrade requests: only `/trpc` (after the same path normalisation as the routes), only when
 * WebSockets are on, only from an allowed page; anything else is answered and closed before a
 * WebSocket exists.
 */
export function createUpgradeHandler(o: UpgradeOptions): (req: IncomingMessage, socket: Duplex, head: Buffer) => void {
  const refuse = (socket: Duplex, status: string): void => {
    answerAndClose(socket, `HTTP/1.1 ${status}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
  };
  return (req, socket, head) => {
    o.connections.upgraded(socket);
    socket.on('error', () => socket.destroy());
    const url = req.url ?? '/';
    const q = url.indexOf('?');
    if (!o.enabled || normalizePath(q === -1 ? url : url.slice(0, q)) !== '/trpc') {
      refuse(socket, o.enabled ? '404 Not Found' : '403 Forbidden');
      return;
    }
    if (!o.origins.allowsUpgrade(req)) {
      o.metrics.rejected('forbidden');
      refuse(socket, '403 Forbidden');
      return;
    }
    o.ws.handleUpgrade(req, socket, head);
  };
}
