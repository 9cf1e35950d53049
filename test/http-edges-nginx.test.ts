import { request } from 'node:http';
import { describe, expect, it } from 'vitest';
import { startNginx } from './helpers/nginx.ts';
import { startServer } from './helpers/server.ts';

/** One request through node:http with a raw header list; the status, content type and body. */
function send(
  url: string,
  options: { method?: string; headers?: Record<string, string>; body?: string | Buffer },
): Promise<{ status: number; type: string; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method: options.method ?? 'GET', headers: options.headers }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, type: String(res.headers['content-type'] ?? ''), body }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(options.body);
  });
}

describe('HTTP at the edges, through the documented nginx (docs/deploy/nginx.conf, real nginx)', () => {
  it('a request offering h2c (curl --http2 on http://) is served: nginx passes its Upgrade on, Sluice must not answer it 404', async () => {
    // The documented site forwards any client's Upgrade header (for WebSockets), so an h2c offer
    // reaches Sluice as one; RFC 9110 section 7.8 lets a server ignore an Upgrade it does not take,
    // and the request is an ordinary HTTP/1.1 request for a route that exists.
    const server = await startServer();
    const nginx = await startNginx('nginx.conf', [server.url]);
    if (!nginx) return;
    const h2c = { connection: 'Upgrade, HTTP2-Settings', upgrade: 'h2c', 'http2-settings': 'AAMAAABkAAQCAAAAAAIAAAAA' };
    const health = await send(`${nginx.url}/health`, { headers: h2c });
    const cancel = await send(`${nginx.url}/v1/chat/cancel`, {
      method: 'POST',
      headers: { ...h2c, 'content-type': 'application/json' },
      body: '{"session_id":"h2c"}',
    });
    expect([health.status, health.body]).toEqual([200, '{"status":"ok"}']);
    expect([cancel.status, cancel.body]).toEqual([200, '{"cancelled":false}']);
  });

  it('a body over the limit gets the documented 413 payload_too_large JSON through nginx too, whatever its size', async () => {
    // README, Limits: "request body | MAX_BODY_BYTES (64 KiB) | 413 payload_too_large", with the
    // JSON error body every route answers (OpenAI's shape on the OpenAI route, which its SDK reads).
    // The documented site's client_max_body_size (1m) answers bodies past 1 MiB itself, in HTML.
    const server = await startServer();
    const nginx = await startNginx('nginx.conf', [server.url]);
    if (!nginx) return;
    const body = JSON.stringify({ message: 'x'.repeat(2 * 1024 * 1024), session_id: 'big' });
    const answers: Record<string, { status: number; type: string; code: unknown }> = {};
    for (const size of ['100 KiB', '2 MiB']) {
      const sent = size === '2 MiB' ? body : body.slice(0, 100 * 1024 - 2) + '"}';
      const res = await send(`${nginx.url}/v1/chat/stream`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: sent });
      let code: unknown;
      try {
        code = (JSON.parse(res.body) as { error?: { code?: unknown } }).error?.code;
      } catch {
        code = `not JSON: ${res.body.slice(0, 60)}`;
      }
      answers[size] = { status: res.status, type: res.type, code };
    }
    const expected = { status: 413, type: 'application/json; charset=utf-8', code: 'payload_too_large' };
    expect(answers).toEqual({ '100 KiB': expected, '2 MiB': expected });
  });
});
