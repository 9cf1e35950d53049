import type { IncomingMessage } from 'node:http';

/**
 * A request target in absolute form (`POST http://host/v1/chat/stream`, as a client configured with
 * a forward proxy sends it) as its origin form, with its authority as the host: RFC 9112 3.2.2
 * says a server MUST accept it and take the host from it, not from the Host header. Every route and
 * the host policy then see one path and one host, however the client wrote them. A target that is
 * not a URL is left as it is (no route has its name).
 */
export function toOriginForm(req: IncomingMessage): void {
  const url = req.url;
  if (url === undefined || !/^https?:\/\//i.test(url)) return;
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return;
  }
  req.url = `${parsed.pathname}${parsed.search}`;
  req.headers.host = parsed.host;
}
