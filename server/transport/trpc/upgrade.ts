import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import type { HttpConnections } from '../http/connections.ts';
import { normalizePath } from '../http/normalize-path.ts';
import { answerAndClose } from '../http/raw-answer.ts';
import type { OriginPolicy } from '../http/origin-policy.ts';
import type { TrpcWsServer } from './ws-server.ts';

export interface UpgradeOptions {
  readonly enabled: boolean;
  readonly origins: OriginPolicy;
  /** Logs and counts a refused upgrade, as every request is (see logRefusedUpgrade). */
  readonly refused: (req: IncomingMessage, status: number, reason: 'not_found' | 'forbidden') => void;
  readonly connections: HttpConnections;
  readonly ws: TrpcWsServer;
}

/**
 * Upgrade requests: only `/trpc` (after the same path normalisation as the routes), only when
 * WebSockets are on, only from an allowed page; anything else is answered and closed before a
 * WebSocket exists.
 */
export function createUpgradeHandler(o: UpgradeOptions): (req: IncomingMessage, socket: Duplex, head: Buffer) => void {
  const refuse = (req: IncomingMessage, socket: Duplex, status: 403 | 404): void => {
    o.refused(req, status, status === 404 ? 'not_found' : 'forbidden');
    answerAndClose(socket, `HTTP/1.1 ${status === 404 ? '404 Not Found' : '403 Forbidden'}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
  };
  return (req, socket, head) => {
    o.connections.upgraded(socket);
    socket.on('error', () => socket.destroy());
    const url = req.url ?? '/';
    const q = url.indexOf('?');
    if (!o.enabled || normalizePath(q === -1 ? url : url.slice(0, q)) !== '/trpc') {
      refuse(req, socket, o.enabled ? 404 : 403);
      return;
    }
    if (!o.origins.allowsUpgrade(req)) {
      refuse(req, socket, 403);
      return;
    }
    o.ws.handleUpgrade(req, socket, head);
  };
}
