import { once } from 'node:events';
import { connect, type Socket } from 'node:net';
import { gzipSync } from 'node:zlib';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { history, rawRequest } from './helpers/sse.ts';
import { startServer } from './helpers/server.ts';

// HTTP as clients, proxies and attackers speak it, at the edges: each test names the RFC section
// or the documented contract it holds the server to.

const sockets = new Set<Socket>();
afterEach(() => {
  for (const socket of sockets) socket.destroy();
  sockets.clear();
});

interface Exchange {
  /** Everything the server sent so far (latin1). */
  received(): string;
  readonly socket: Socket;
  readonly closed: Promise<void>;
}

/** Opens a raw connection and writes `bytes` on it as one write. */
async function exchange(port: number, bytes: string | Buffer): Promise<Exchange> {
  const socket = connect(port, '127.0.0.1');
  sockets.add(socket);
  let text = '';
  socket.on('data', (chunk: Buffer) => (text += chunk.toString('latin1')));
  socket.on('error', () => undefined);
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  await once(socket, 'connect');
  socket.write(bytes);
  return { socket, received: () => text, closed };
}

/** The first response whose status is final (not 1xx), or whatever came before the connection closed. */
async function firstFinalResponse(peer: Exchange): Promise<{ statusLines: string[]; head: string; body: string }> {
  const parse = () => {
    const text = peer.received();
    const statusLines: string[] = [];
    let at = 0;
    for (;;) {
      const end = text.indexOf('\r\n\r\n', at);
      if (end === -1) return undefined;
      const head = text.slice(at, end);
      const statusLine = head.split('\r\n', 1)[0]!;
      statusLines.push(statusLine);
      if (/^HTTP\/1\.1 1\d\d /.test(statusLine)) {
        at = end + 4;
        continue;
      }
      const length = /\r\ncontent-length: *(\d+)/i.exec(head);
      const body = text.slice(end + 4);
      if (length && body.length < Number(length[1])) return undefined;
      return { statusLines, head, body: length ? body.slice(0, Number(length[1])) : body };
    }
  };
  const settled = await Promise.race([
    vi.waitFor(
      () => {
        const r = parse();
        expect(r).toBeDefined();
        return r!;
      },
      { timeout: 5000, interval: 5 },
    ),
    peer.closed.then(() => parse() ?? { statusLines: [peer.received().split('\r\n', 1)[0]!], head: peer.received(), body: '' }),
  ]);
  return settled;
}

describe('HTTP at the edges', () => {
  it('a request offering another protocol (Upgrade: h2c, as curl --http2 sends on http://) is served over HTTP/1.1, not answered 404', async () => {
    // RFC 9110 section 7.8: "A server MAY ignore a received Upgrade header field if it wishes to
    // continue using the current protocol on that connection." The request itself is an ordinary
    // HTTP/1.1 request for a route that exists; only WebSocket upgrades at /trpc are Sluice's to take.
    const { port } = await startServer();
    const h2c = 'Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n';
    const healthCheck = await firstFinalResponse(await exchange(port, `GET /health HTTP/1.1\r\nHost: localhost\r\n${h2c}\r\n`));
    expect(healthCheck.statusLines.at(-1)).toBe('HTTP/1.1 200 OK');
    expect(healthCheck.body).toBe('{"status":"ok"}');

    const body = '{"session_id":"h2c"}';
    const cancel = await firstFinalResponse(
      await exchange(
        port,
        `POST /v1/chat/cancel HTTP/1.1\r\nHost: localhost\r\n${h2c}Content-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body}`,
      ),
    );
    expect(cancel.statusLines.at(-1)).toBe('HTTP/1.1 200 OK');
    expect(cancel.body).toBe('{"cancelled":false}');
  });

  it('an absolute-form request target (POST http://host/v1/chat/cancel) reaches the route named by its path', async () => {
    // RFC 9112 section 3.2.2: "A server MUST accept the absolute-form in requests even though most
    // HTTP/1.1 clients will only send the absolute-form to a proxy."
    const { port } = await startServer();
    const body = '{"session_id":"absolute"}';
    const answer = await firstFinalResponse(
      await exchange(
        port,
        `POST http://localhost:${port}/v1/chat/cancel HTTP/1.1\r\nHost: localhost:${port}\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body}`,
      ),
    );
    expect(answer.statusLines.at(-1)).toBe('HTTP/1.1 200 OK');
    expect(answer.body).toBe('{"cancelled":false}');
  });

  it('an absolute-form target names the host the policy judges (ALLOWED_HOSTS), not the Host header', async () => {
    // RFC 9112 section 3.2.2: an origin server that receives the absolute-form "MUST ignore the
    // received Host header field (if any) and instead use the host information of the request-target".
    // A name that is not allowed is refused 403 forbidden, as it is in a Host header.
    const { port } = await startServer();
    const body = '{"session_id":"absolute"}';
    const answer = await firstFinalResponse(
      await exchange(
        port,
        `POST http://evil.example/v1/chat/cancel HTTP/1.1\r\nHost: localhost:${port}\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body}`,
      ),
    );
    expect(answer.statusLines.at(-1)).toBe('HTTP/1.1 403 Forbidden');
    expect(JSON.parse(answer.body)).toMatchObject({ error: { code: 'forbidden' } });
  });

  it.each([
    [
      'a body declared larger than MAX_BODY_BYTES',
      'Authorization: Bearer sk-test-key-0123456789\r\nContent-Type: application/json\r\nContent-Length: 10000000',
      '413',
    ],
    ['no key', 'Content-Type: application/json\r\nContent-Length: 40', '401'],
    ['a Content-Type that is not JSON', 'Authorization: Bearer sk-test-key-0123456789\r\nContent-Type: text/plain\r\nContent-Length: 40', '415'],
  ])('Expect: 100-continue with %s is refused by its final status, without inviting the body with 100 Continue', async (_case, headers, status) => {
    // RFC 9110 section 10.1.1: the point of 100-continue is that a client need not send content
    // that will be refused; a server that can tell from the headers alone sends that final status
    // at once. Sluice sends "100 Continue" first, and curl then uploads (1.3 MB of a 10 MB body
    // before the 413 stops it).
    const { port } = await startServer({ API_KEYS: 'sk-test-key-0123456789' });
    const peer = await exchange(port, `POST /v1/chat/stream HTTP/1.1\r\nHost: localhost\r\nExpect: 100-continue\r\n${headers}\r\n\r\n`);
    const answer = await firstFinalResponse(peer);
    expect(answer.statusLines).toEqual([expect.stringMatching(new RegExp(`^HTTP/1\\.1 ${status} `))]);
  });

  it('Expect: 100-continue on a request its headers let through is invited (100 Continue), then answered once its body comes', async () => {
    const { port } = await startServer();
    const body = JSON.stringify({ session_id: 'invited' });
    const peer = await exchange(
      port,
      `POST /v1/chat/cancel HTTP/1.1\r\nHost: localhost\r\nExpect: 100-continue\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n`,
    );
    await vi.waitFor(() => expect(peer.received()).toContain('HTTP/1.1 100 Continue'));
    peer.socket.write(body);
    const answer = await firstFinalResponse(peer);
    expect(answer.statusLines).toEqual(['HTTP/1.1 100 Continue', 'HTTP/1.1 200 OK']);
  });

  it('a body with a Content-Encoding Sluice does not decode is refused 415, not read as if it were plain JSON', async () => {
    // RFC 9110 section 8.4 / 15.5.16: content codings are part of the representation; a server
    // that does not support one answers 415 (with Accept-Encoding naming what it takes). Sluice
    // ignores the header: gzipped JSON is "not valid JSON" (400), and plain JSON labelled gzip is
    // taken as it is.
    const { url } = await startServer();
    const json = JSON.stringify({ session_id: 'coded' });
    const gzipped = await rawRequest(`${url}/v1/chat/cancel`, {
      headers: { 'content-type': 'application/json', 'content-encoding': 'gzip' },
      body: gzipSync(json),
    });
    const mislabelled = await rawRequest(`${url}/v1/chat/cancel`, {
      headers: { 'content-type': 'application/json', 'content-encoding': 'gzip' },
      body: json,
    });
    expect([gzipped.status, JSON.parse(gzipped.body.toString()).error?.code]).toEqual([415, 'unsupported_media_type']);
    expect([mislabelled.status, JSON.parse(mislabelled.body.toString()).error?.code]).toEqual([415, 'unsupported_media_type']);
  });

  it.each([
    ['application/json', 'bytes that are not UTF-8'],
    ['application/json; charset=latin1', 'a latin1 body, as its Content-Type says'],
  ])('a message sent as %s with %s is refused before a stream starts, not stored with U+FFFD in its place', async (contentType) => {
    // RFC 8259 section 8.1: JSON exchanged between systems MUST be UTF-8. A body that is not is
    // malformed (400 invalid_json), or of a type Sluice does not take (415): either way a 4xx
    // before any stream, as the SSE spec says of bad input. Sluice decodes it with replacement:
    // "café" becomes "caf\uFFFD", is sent to the model and kept in history, silently.
    const { url } = await startServer();
    const body = Buffer.concat([Buffer.from('{"message": "caf'), Buffer.from([0xe9]), Buffer.from('", "session_id": "latin1"}')]);
    const res = await rawRequest(`${url}/v1/chat/stream`, { headers: { 'content-type': contentType }, body });
    expect(res.status).toBeGreaterThanOrEqual(400);
    expect(res.status).toBeLessThan(500);
    const stored = await history(url, 'latin1');
    expect(stored.messages.map((m) => m.content).join('')).not.toContain('\uFFFD');
  });

  it('If-None-Match on the page assets uses weak comparison, lists and "*": each names the current asset, so 304', async () => {
    // RFC 9110 section 13.1.2: "A recipient MUST use the weak comparison function when comparing
    // entity tags for If-None-Match"; the field is a list; "*" matches any current representation.
    // Caches that revalidate for several clients send a list; some proxies weaken ETags (W/).
    const { url } = await startServer();
    const first = await fetch(`${url}/assets/app.css`);
    await first.arrayBuffer();
    const etag = first.headers.get('etag')!;
    expect(etag).toMatch(/^"/);
    expect((await fetch(`${url}/assets/app.css`, { headers: { 'if-none-match': etag } })).status).toBe(304);
    const statuses: Record<string, number> = {};
    for (const value of [`W/${etag}`, `"other", ${etag}`, '*']) {
      const res = await fetch(`${url}/assets/app.css`, { headers: { 'if-none-match': value } });
      await res.arrayBuffer();
      statuses[value] = res.status;
    }
    expect(statuses).toEqual({ [`W/${etag}`]: 304, [`"other", ${etag}`]: 304, '*': 304 });
  });
});
