import type { IncomingMessage, Server } from 'node:http';
import type { Duplex } from 'node:stream';

/** Whether a request asks for a WebSocket: the one protocol Sluice upgrades to (at /trpc). */
export function asksForWebSocket(req: IncomingMessage): boolean {
  return /(^|,)\s*websocket\s*(,|$)/i.test(req.headers.upgrade ?? '');
}

/** The headers that offer the protocol, and the connection options that name them. */
const OFFER = new Set(['upgrade', 'http2-settings']);

/**
 * Serves a request that offers another protocol (`Upgrade: h2c`, as `curl --http2` sends on
 * http://) over HTTP/1.1, on its connection, as RFC 9110 7.8 lets a server ignore the offer.
 * node:http hands every request with an Upgrade to the 'upgrade' listener, its body unread: the
 * request is given back to the server's parser, less the offer, followed by what came after its
 * head, as a connection of its own (already counted: the connection listener skips it).
 */
export function serveIgnoringUpgrade(server: Server, req: IncomingMessage, socket: Duplex, head: Buffer): void {
  const lines = [`${req.method} ${req.url} HTTP/${req.httpVersion}`];
  const raw = req.rawHeaders;
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = raw[i]!;
    const lower = name.toLowerCase();
    if (OFFER.has(lower)) continue;
    if (lower === 'connection') {
      const kept = raw[i + 1]!.split(',')
        .map((token) => token.trim())
        .filter((token) => token !== '' && !OFFER.has(token.toLowerCase()));
      if (kept.length > 0) lines.push(`${name}: ${kept.join(', ')}`);
      continue;
    }
    lines.push(`${name}: ${raw[i + 1]!}`);
  }
  socket.unshift(Buffer.concat([Buffer.from(`${lines.join('\r\n')}\r\n\r\n`, 'latin1'), head]));
  server.emit('connection', socket);
}
