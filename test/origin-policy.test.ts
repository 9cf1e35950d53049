import { describe, expect, it, vi } from 'vitest';
import NodeWebSocket from 'ws';
import { loadConfig } from '../server/config.ts';
import { defaultAllowedHosts, hostnameOf, isAllowedHost, isLoopbackHost, parseAllowedHosts } from '../server/net/hosts.ts';
import { parseAllowedOrigins } from '../server/net/origins.ts';
import { OriginPolicy } from '../server/transport/http/origin-policy.ts';
import { SessionHistory } from '../shared/index.ts';
import { openPage } from './helpers/browser.ts';
import { captureLogs } from './helpers/logs.ts';
import { BLANK_PAGE, serveOrigin } from './helpers/origin-server.ts';
import { startServer, type TestServer } from './helpers/server.ts';
import { rawRequest } from './helpers/sse.ts';

async function history(server: TestServer, sessionId: string): Promise<SessionHistory['messages']> {
  return SessionHistory.parse(await (await fetch(`${server.url}/v1/sessions/${sessionId}/messages`)).json()).messages;
}

describe('a page on another website, with keys off (headless Chromium)', () => {
  it('cannot open the WebSocket to read a history', async () => {
    const server = await startServer();
    await rawRequest(`${server.url}/v1/chat/stream`, {
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ message: 'the secret plan', session_id: 'victim' }),
    });
    const site = await serveOrigin({ '/': BLANK_PAGE });
    const browser = await openPage(`${site.origin}/`);
    if (!browser) return;

    // Opened, the socket would answer chat.history for any session.
    const ws = await browser.page.evaluate(
      (url) =>
        new Promise<{ opened: boolean; data?: string }>((resolve) => {
          const socket = new WebSocket(url);
          socket.onopen = () =>
            socket.send(JSON.stringify({ id: 1, method: 'query', params: { path: 'chat.history', input: { json: { sessionId: 'victim' } } } }));
          socket.onmessage = (event) => {
            resolve({ opened: true, data: String(event.data) });
            socket.close();
          };
          socket.onclose = () => resolve({ opened: false });
        }),
      `${server.url.replace('http:', 'ws:')}/trpc`,
    );
    expect(ws.data ?? '').not.toContain('the secret plan');
    expect(ws.opened).toBe(false);
    expect(browser.errors).toEqual([]);
  });

  it('cannot start a reply with a simple GET of the subscription (no preflight, no Origin)', async () => {
    const { logger, lines } = captureLogs('info');
    const server = await startServer({ LOG_LEVEL: 'info' }, { logger });
    const site = await serveOrigin({ '/': BLANK_PAGE });
    const browser = await openPage(`${site.origin}/`);
    if (!browser) return;

    const input = encodeURIComponent(JSON.stringify({ json: { message: 'planted by another site', sessionId: 'csrf' } }));
    await browser.page.evaluate((url) => fetch(url, { mode: 'no-cors' }).then(() => undefined), `${server.url}/trpc/chat.stream?input=${input}`);
    // Answered (the request's log line is written when its response ends): nothing was started.
    await vi.waitFor(() => expect(lines.some((line) => line.msg === 'request' && line.path === '/trpc/chat.stream')).toBe(true));
    expect(await history(server, 'csrf')).toEqual([]);
    expect(browser.errors).toEqual([]);
  });
});

/** The status of a WebSocket handshake to `/trpc` (101 when it opens). */
function upgradeStatus(baseUrl: string, options: NodeWebSocket.ClientOptions): Promise<number> {
  return new Promise((resolve) => {
    const ws = new NodeWebSocket(`${baseUrl.replace('http:', 'ws:')}/trpc`, options);
    ws.on('error', () => undefined);
    ws.once('open', () => {
      ws.close();
      resolve(101);
    });
    ws.once('unexpected-response', (_req, res) => {
      resolve(res.statusCode ?? 0);
      ws.terminate();
    });
  });
}

const APP = 'http://localhost:5173';
const EVIL = 'https://evil.example';

describe('ALLOWED_ORIGINS', () => {
  it('parses origins to their serialized form and names a bad entry', () => {
    expect(parseAllowedOrigins('https://App.Example.com:443/, http://localhost:5173,capacitor://localhost')).toEqual(
      new Set(['https://app.example.com', 'http://localhost:5173', 'capacitor://localhost']),
    );
    expect(parseAllowedOrigins('*')).toBe('*');
    expect(parseAllowedOrigins(undefined)).toEqual(new Set());
    expect(() => parseAllowedOrigins('https://app.example.com/path')).toThrow('"https://app.example.com/path" is not an origin');
    expect(() => parseAllowedOrigins('null')).toThrow('"null" is not an origin');
    expect(() => parseAllowedOrigins('*,https://a.example')).toThrow('list it alone');
    expect(() => loadConfig({ ALLOWED_ORIGINS: 'app.example.com' })).toThrow(/ALLOWED_ORIGINS: "app.example.com" is not an origin/);
    expect(() => new OriginPolicy({ allowed: new Set(['HTTPS://A.example']) })).toThrow(RangeError);
  });
});

describe('origin policy over HTTP and WebSocket', () => {
  it("programs (no Origin) and the server's own pages pass; allowed pages get CORS; other pages get 403 and nothing done", async () => {
    const server = await startServer({ ALLOWED_ORIGINS: APP });
    const host = new URL(server.url).host;
    const historyUrl = `${server.url}/v1/sessions/s/messages`;

    const program = await rawRequest(historyUrl, { method: 'GET' });
    expect(program.status).toBe(200);
    expect(program.headers['access-control-allow-origin']).toBeUndefined();

    const own = await rawRequest(historyUrl, { method: 'GET', headers: { origin: `http://${host}`, 'sec-fetch-site': 'same-origin' } });
    expect(own.status).toBe(200);
    expect(own.headers['access-control-allow-origin']).toBeUndefined();

    const app = await rawRequest(historyUrl, { method: 'GET', headers: { origin: APP, 'sec-fetch-site': 'cross-site' } });
    expect(app.status).toBe(200);
    expect(app.headers['access-control-allow-origin']).toBe(APP);
    expect(app.headers['vary']).toContain('Origin');
    // What the README tells a page to read: a 429's wait, a reply's id (to resume it), the openai SDK's retry hint.
    expect(String(app.headers['access-control-expose-headers']).split(/,\s*/)).toEqual(
      expect.arrayContaining(['Retry-After', 'WWW-Authenticate', 'X-Sluice-Reply-Id', 'x-should-retry']),
    );

    // Streams answer per origin too, so a cache never hands one origin's answer to another.
    const streamInput = encodeURIComponent(JSON.stringify({ json: { message: 'hi', sessionId: 'vary' } }));
    const trpcSse = await rawRequest(`${server.url}/trpc/chat.stream?input=${streamInput}`, {
      method: 'GET',
      headers: { origin: APP, 'sec-fetch-site': 'cross-site', accept: 'text/event-stream' },
    });
    expect(trpcSse.status).toBe(200);
    expect(trpcSse.headers['access-control-allow-origin']).toBe(APP);
    expect(String(trpcSse.headers['vary']).split(/,\s*/)).toEqual(expect.arrayContaining(['Origin', 'trpc-accept', 'accept']));
    const sseRoute = await rawRequest(`${server.url}/v1/chat/stream`, {
      headers: { origin: APP, 'sec-fetch-site': 'cross-site', 'content-type': 'application/json' },
      body: JSON.stringify({ message: 'hi', session_id: 'vary-sse' }),
    });
    expect(sseRoute.status).toBe(200);
    expect(sseRoute.headers['vary']).toContain('Origin');
    // tRPC's own answers (a query, and its refusals) too, and they are never kept by a cache: they are one caller's.
    for (const path of ['chat.history', 'chat.nothing']) {
      const query = await rawRequest(`${server.url}/trpc/${path}?input=${encodeURIComponent('{"json":{"sessionId":"s"}}')}`, {
        method: 'GET',
        headers: { origin: APP, 'sec-fetch-site': 'cross-site' },
      });
      expect(query.headers['access-control-allow-origin']).toBe(APP);
      expect(String(query.headers['vary']).split(/,\s*/)).toEqual(expect.arrayContaining(['Origin', 'trpc-accept', 'accept']));
      expect(query.headers['cache-control']).toBe('no-store');
    }

    // A simple request (text/plain needs no preflight) from elsewhere is refused before it acts.
    const evil = await rawRequest(`${server.url}/v1/chat/stream`, {
      headers: { origin: EVIL, 'content-type': 'text/plain' },
      body: JSON.stringify({ message: 'planted', session_id: 'target' }),
    });
    expect(evil.status).toBe(403);
    expect(evil.headers['access-control-allow-origin']).toBeUndefined();
    expect(JSON.parse(evil.body.toString()).error).toEqual({ code: 'forbidden', message: `The origin ${EVIL} is not allowed (ALLOWED_ORIGINS)` });
    expect(await history(server, 'target')).toEqual([]);

    // No Origin, but the browser says the request comes from another site (a no-cors GET).
    const input = encodeURIComponent(JSON.stringify({ json: { message: 'planted', sessionId: 'target' } }));
    const noCors = await rawRequest(`${server.url}/trpc/chat.stream?input=${input}`, { method: 'GET', headers: { 'sec-fetch-site': 'cross-site' } });
    expect(noCors.status).toBe(403);
    expect(JSON.parse(noCors.body.toString()).error.code).toBe('forbidden');
    const sameSite = await rawRequest(historyUrl, { method: 'GET', headers: { 'sec-fetch-site': 'same-site' } });
    expect(sameSite.status).toBe(403);
    // Typed into the address bar: not a cross-site request.
    expect((await rawRequest(historyUrl, { method: 'GET', headers: { 'sec-fetch-site': 'none' } })).status).toBe(200);
    expect(await history(server, 'target')).toEqual([]);

    // The OpenAI route refuses in OpenAI's shape.
    const openai = await rawRequest(`${server.url}/v1/models`, { method: 'GET', headers: { origin: EVIL } });
    expect(openai.status).toBe(403);
    expect(JSON.parse(openai.body.toString()).error).toMatchObject({ type: 'permission_error', code: 'forbidden' });

    // The page and its assets are for any site (a link from elsewhere opens the page).
    expect((await rawRequest(`${server.url}/`, { method: 'GET', headers: { 'sec-fetch-site': 'cross-site' } })).status).toBe(200);
  });

  it('answers CORS preflights for allowed origins only', async () => {
    const server = await startServer({ ALLOWED_ORIGINS: APP });
    const preflight = (origin: string, path: string, method = 'POST', headers = 'authorization, content-type') =>
      rawRequest(`${server.url}${path}`, {
        method: 'OPTIONS',
        headers: { origin, 'access-control-request-method': method, 'access-control-request-headers': headers },
      });
    for (const path of ['/v1/chat/stream', '/trpc/chat.history', '/trpc/chat.cancel', '/v1/chat/completions', '/v1/sessions/s']) {
      const ok = await preflight(APP, path);
      expect(ok.status).toBe(204);
      expect(ok.headers['access-control-allow-origin']).toBe(APP);
      expect(ok.headers['access-control-allow-methods']).toBe('GET, POST, DELETE');
      expect(ok.headers['access-control-allow-headers']).toBe('authorization, content-type');
      expect(ok.headers['access-control-max-age']).toBe('600');

      const refused = await preflight(EVIL, path);
      expect(refused.status).toBe(403);
      expect(refused.headers['access-control-allow-origin']).toBeUndefined();
      expect(refused.headers['access-control-allow-methods']).toBeUndefined();
    }
    // A header list that is not one is not echoed.
    expect((await preflight(APP, '/v1/chat/stream', 'POST', 'x-a;b')).headers['access-control-allow-headers']).toBeUndefined();
  });

  it('`*` allows any origin', async () => {
    const server = await startServer({ ALLOWED_ORIGINS: '*' });
    const res = await rawRequest(`${server.url}/v1/sessions/s/messages`, { method: 'GET', headers: { origin: EVIL } });
    expect(res.status).toBe(200);
    expect(res.headers['access-control-allow-origin']).toBe(EVIL);
  });

  it('WebSocket upgrades: programs, the own origin and allowed origins connect; others get 403', async () => {
    const server = await startServer({ ALLOWED_ORIGINS: APP });
    const connect = (origin?: string): Promise<number> => upgradeStatus(server.url, origin ? { origin } : {});
    expect(await connect()).toBe(101);
    expect(await connect(APP)).toBe(101);
    expect(await connect(`http://${new URL(server.url).host}`)).toBe(101);
    expect(await connect(EVIL)).toBe(403);
    expect(await connect('null')).toBe(403);
  });
});

describe('DNS rebinding', () => {
  // A page on evil.example whose name the attacker then points at 127.0.0.1: the browser takes
  // Sluice for the page's own origin (Origin and Host agree), and sends no Origin at all on a GET.
  it('a page whose name was rebound to a loopback Sluice gets nothing and starts nothing, with or without Origin; the real names still pass', async () => {
    const server = await startServer({});
    const port = new URL(server.url).port;
    const rebound = `evil.example:${port}`;
    const refusal = { code: 'forbidden', message: 'The host evil.example is not allowed (ALLOWED_HOSTS)' };

    const post = await rawRequest(`${server.url}/v1/chat/stream`, {
      headers: { host: rebound, origin: `http://${rebound}`, 'sec-fetch-site': 'same-origin', 'content-type': 'application/json' },
      body: JSON.stringify({ message: 'planted', session_id: 'victim' }),
    });
    expect(post.status).toBe(403);
    expect(JSON.parse(post.body.toString()).error).toEqual(refusal);
    const get = await rawRequest(`${server.url}/v1/sessions/victim/messages`, { method: 'GET', headers: { host: rebound, 'sec-fetch-site': 'same-origin' } });
    expect(get.status).toBe(403);
    expect(JSON.parse(get.body.toString()).error).toEqual(refusal);
    expect(await upgradeStatus(server.url, { headers: { host: rebound }, origin: `http://${rebound}` })).toBe(403);
    expect(await history(server, 'victim')).toEqual([]);

    for (const name of ['localhost', '127.0.0.1']) {
      const own = await rawRequest(`${server.url}/v1/sessions/victim/messages`, {
        method: 'GET',
        headers: { host: `${name}:${port}`, origin: `http://${name}:${port}`, 'sec-fetch-site': 'same-origin' },
      });
      expect(own.status, name).toBe(200);
    }
    // Nor without Origin or Fetch Metadata, which Chromium leaves out for a plain-http name other
    // than localhost (dns-rebinding-browser.test.ts): the Host must name the server, a program's too.
    const bare = await rawRequest(`${server.url}/v1/sessions/victim/messages`, { method: 'GET', headers: { host: rebound } });
    expect(bare.status).toBe(403);
    expect(JSON.parse(bare.body.toString()).error).toEqual(refusal);
    expect(await upgradeStatus(server.url, { headers: { host: rebound } })).toBe(403);
    // An address is not a rebound name: a scraper or a program that reaches Sluice by one is served
    // (another loopback address, IPv6's long form, the mapped IPv4 form), as is `localhost.` (the
    // name, fully qualified) and a request with no Host (HTTP/1.0: no browser sends one).
    for (const host of [`127.0.0.2:${port}`, `[0:0:0:0:0:0:0:1]:${port}`, `[::ffff:127.0.0.1]:${port}`, `localhost.:${port}`]) {
      expect((await rawRequest(`${server.url}/v1/sessions/victim/messages`, { method: 'GET', headers: { host } })).status, host).toBe(200);
      expect(await upgradeStatus(server.url, { headers: { host } }), host).toBe(101);
    }
    const listed = await startServer({ ALLOWED_HOSTS: 'chat.example.com', TRUSTED_PROXIES: '127.0.0.1' });
    const metrics = await rawRequest(`${listed.url}/metrics`, { method: 'GET' });
    expect(metrics.status).toBe(200);
    expect((await rawRequest(`${listed.url}/health`, { method: 'GET', headers: { host: 'evil.example.' } })).status).toBe(200);
    expect((await rawRequest(`${listed.url}/v1/sessions/victim/messages`, { method: 'GET', headers: { host: 'evil.example.' } })).status).toBe(403);
    // Probes answer under any name (a kubelet sends the pod's address): they tell nothing but "up".
    expect((await rawRequest(`${server.url}/health`, { method: 'GET', headers: { host: rebound } })).status).toBe(200);
    // Named in ALLOWED_HOSTS, the host is served.
    const named = await startServer({ ALLOWED_HOSTS: 'evil.example' });
    const namedPort = new URL(named.url).port;
    const served = await rawRequest(`${named.url}/v1/sessions/victim/messages`, {
      method: 'GET',
      headers: { host: `evil.example:${namedPort}`, 'sec-fetch-site': 'same-origin' },
    });
    expect(served.status).toBe(200);
  });
});

describe('a server open to the network with no credential', () => {
  it('says so at start: anyone who reaches the port can use it, and with any host allowed so can a rebound page', async () => {
    const warningsOf = async (settings: Record<string, string>): Promise<string[]> => {
      const logs = captureLogs('info');
      await startServer(settings, { logger: logs.logger });
      return logs.lines.filter((line) => line.level === 40).map((line) => String(line.msg));
    };
    const open = await warningsOf({ HOST: '0.0.0.0' });
    expect(open).toHaveLength(1);
    expect(open[0]).toMatch(
      /no credential is required and HOST=0\.0\.0\.0 is not a loopback address: anyone who can reach the port can use this server \(set API_KEYS or AUTH_JWKS_URL\)/,
    );
    expect(open[0]).toMatch(/any web page whose name is made to point at it \(DNS rebinding: set ALLOWED_HOSTS\)/);
    const named = await warningsOf({ HOST: '0.0.0.0', ALLOWED_HOSTS: 'chat.example.com' });
    expect(named).toHaveLength(1);
    expect(named[0]).not.toMatch(/DNS rebinding/);
    expect(await warningsOf({ HOST: '0.0.0.0', API_KEYS: 'k-1234567890abcdef' })).toEqual([]);
    expect(await warningsOf({ HOST: '127.0.0.1' })).toEqual([]);
  });
});

describe('ALLOWED_HOSTS', () => {
  it('parses hostnames, names a bad entry, and defaults to the loopback names only on a loopback address with no proxy', () => {
    expect(parseAllowedHosts('Chat.Example.com, localhost,[::1]')).toEqual(new Set(['chat.example.com', 'localhost', '[::1]']));
    expect(parseAllowedHosts('*')).toBe('*');
    expect(() => parseAllowedHosts('https://chat.example.com')).toThrow('"https://chat.example.com" is not a hostname');
    expect(() => parseAllowedHosts('chat.example.com:443')).toThrow('is not a hostname (no scheme, no port)');
    expect(() => parseAllowedHosts('*,a.example')).toThrow('list it alone');
    expect(() => loadConfig({ ALLOWED_HOSTS: 'a.example:80' })).toThrow(/ALLOWED_HOSTS: "a.example:80" is not a hostname/);
    expect(hostnameOf('[::1]:8000')).toBe('[::1]');
    expect(hostnameOf('Chat.Example.com')).toBe('chat.example.com');
    expect(hostnameOf('a b')).toBeUndefined();
    const local = defaultAllowedHosts('127.0.0.1', false);
    for (const host of ['localhost:8000', '127.0.0.1:8000', '[::1]:8000', 'app.localhost:8000']) expect(isAllowedHost(local, host), host).toBe(true);
    for (const host of ['evil.example:8000', 'localhost.evil.example', 'evil.example.']) expect(isAllowedHost(local, host), String(host)).toBe(false);
    // Addresses, and no Host at all, are never a rebound name.
    for (const host of ['10.0.0.5:8000', '127.0.0.2', '[fe80::1]:8000', 'localhost.:8000', undefined])
      expect(isAllowedHost(local, host), String(host)).toBe(true);
    expect(defaultAllowedHosts('127.0.0.1', true)).toBe('*');
    expect(defaultAllowedHosts('0.0.0.0', false)).toBe('*');
    // An IPv4-mapped loopback address is one too (only this machine reaches it).
    expect(isLoopbackHost('::ffff:127.0.0.1')).toBe(true);
    expect(isLoopbackHost('0.0.0.0')).toBe(false);
  });
});
