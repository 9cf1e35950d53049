import { request } from 'node:http';
import { createTRPCClient, httpSubscriptionLink } from '@trpc/client';
import { EventSource } from 'eventsource';
import superjson from 'superjson';
import { describe, expect, it, vi } from 'vitest';
import { chatClientTransport, closeChatClient, createChatClient, streamChat, type StreamEvent } from '../client/index.ts';
import { simulatedDeltas } from '../server/core/providers/simulated.ts';
import type { AppRouter } from '../server/router-type.ts';
import { SessionHistory, SseErrorData, SseMessageData } from '../shared/index.ts';
import { openPage } from './helpers/browser.ts';
import { startNginx, type Nginx, type SiteFile } from './helpers/nginx.ts';
import { startSluiceProcess, type SluiceProcess } from './helpers/process.ts';
import { startRedis } from './helpers/redis.ts';
import { parseSse } from './helpers/sse.ts';
import { metricTotal } from './helpers/metrics-text.ts';
import { startTcpProxy } from './helpers/tcp-proxy.ts';

const PROMPT = 'explain caching';
const FULL = simulatedDeltas(PROMPT);
const reply = (message: string): string => simulatedDeltas(message).join('');

interface Timed {
  readonly status: number;
  readonly headers: Record<string, string | string[] | undefined>;
  readonly body: Buffer;
  /** When each complete SSE event carrying an `id:` line (or matching `event`) arrived (performance.now()). */
  readonly arrivals: number[];
}

/** A raw HTTP request (node:http) that keeps the body's exact bytes and when each event arrived. */
function timedRequest(
  url: string,
  options: { method?: string; headers?: Record<string, string>; body?: string; localAddress?: string; event?: RegExp } = {},
): Promise<Timed> {
  const counted = options.event ?? /^id: /m;
  return new Promise((resolve, reject) => {
    const req = request(url, { method: options.method ?? 'GET', headers: options.headers, localAddress: options.localAddress }, (res) => {
      const chunks: Buffer[] = [];
      const arrivals: number[] = [];
      let pending = '';
      res.on('data', (chunk: Buffer) => {
        const at = performance.now();
        chunks.push(chunk);
        pending += chunk.toString('utf8');
        const blocks = pending.split(/\r\n\r\n|\n\n/);
        pending = blocks.pop()!;
        for (const block of blocks) if (counted.test(block)) arrivals.push(at);
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks), arrivals }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(options.body);
  });
}

/** Generation ids differ per reply; everything else must be byte for byte the same. */
const normalizeIds = (body: Buffer): string =>
  body
    .toString('utf8')
    .replace(/^id: [A-Za-z0-9_-]+:/gm, 'id: <generation>:')
    .replace(/"replyId":"[A-Za-z0-9_-]+"/g, '"replyId":"<generation>"');

const median = (values: number[]): number => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;
const gaps = (times: number[]): number[] => times.slice(1).map((t, i) => t - times[i]!);

/** Events at 100 ms a token arrived one by one, not in a burst at the end. */
function expectTokenByToken(arrivals: number[], count: number): void {
  expect(arrivals.length).toBeGreaterThanOrEqual(count);
  // The first event reached the client long before the last one (≈ 100 ms × the deltas between).
  expect(arrivals.at(-1)! - arrivals[0]!).toBeGreaterThan(0.7 * 100 * (count - 1));
  // And they came spread out: a typical gap is a token's delay, not zero.
  expect(median(gaps(arrivals))).toBeGreaterThan(50);
}

const trpcStreamUrl = (base: string, sessionId: string): string =>
  `${base}/trpc/chat.stream?input=${encodeURIComponent(JSON.stringify(superjson.serialize({ message: PROMPT, sessionId })))}`;

const sseBody = (sessionId: string, message = PROMPT): string => JSON.stringify({ message, session_id: sessionId });

/** The value of one sample in an instance's /metrics (scraped from the instance itself), summed over matching series. */
async function metric(instance: SluiceProcess, name: string, labels: Record<string, string> = {}): Promise<number> {
  return metricTotal(await (await fetch(`${instance.url}/metrics`)).text(), name, labels);
}

const logLines = (instance: SluiceProcess): Array<Record<string, unknown>> =>
  instance
    .output()
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Record<string, unknown>);

async function history(base: string, sessionId: string): Promise<SessionHistory> {
  return SessionHistory.parse(await (await fetch(`${base}/v1/sessions/${sessionId}/messages`)).json());
}

/** Two Sluice processes on one real Redis behind nginx's round robin. Undefined without redis-server or nginx. */
async function cluster(
  env: Record<string, string | number>,
  site: SiteFile = 'nginx.conf',
): Promise<{ a: SluiceProcess; b: SluiceProcess; nginx: Nginx } | undefined> {
  const redis = await startRedis();
  if (!redis) return undefined;
  const [a, b] = await Promise.all([startSluiceProcess({ REDIS_URL: redis.url, ...env }), startSluiceProcess({ REDIS_URL: redis.url, ...env })]);
  const nginx = await startNginx(site, [a.url, b.url]);
  return nginx ? { a, b, nginx } : undefined;
}

/** Which of the two instances is producing a reply right now. */
async function runner(a: SluiceProcess, b: SluiceProcess): Promise<{ running: SluiceProcess; other: SluiceProcess }> {
  const [ra, rb] = await Promise.all([metric(a, 'sluice_running_generations'), metric(b, 'sluice_running_generations')]);
  expect(ra + rb).toBe(1);
  return ra === 1 ? { running: a, other: b } : { running: b, other: a };
}

describe('Sluice behind nginx (docs/deploy/nginx.conf, real nginx)', () => {
  it('streams token by token on the SSE route and tRPC over SSE, with the bytes of a direct connection; /metrics stays private', async () => {
    const sluice = await startSluiceProcess({ SIM_DELAY_MS: 100, TRUSTED_PROXIES: '127.0.0.1' });
    const nginx = await startNginx('nginx.conf', [sluice.url]);
    if (!nginx) return;
    // The client asks for compression, as browsers do: a stream must still not be compressed (or held back).
    const post = (base: string, sessionId: string) =>
      timedRequest(`${base}/v1/chat/stream`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'accept-encoding': 'gzip' },
        body: sseBody(sessionId),
      });
    const get = (base: string, sessionId: string) =>
      timedRequest(trpcStreamUrl(base, sessionId), { headers: { accept: 'text/event-stream', 'accept-encoding': 'gzip' } });
    // tRPC's own client over SSE (httpSubscriptionLink), through nginx.
    const viaLink = new Promise<{ events: StreamEvent[]; arrivals: number[] }>((resolve, reject) => {
      const client = createTRPCClient<AppRouter>({
        links: [httpSubscriptionLink({ url: `${nginx.url}/trpc`, transformer: superjson, EventSource })],
      });
      const events: StreamEvent[] = [];
      const arrivals: number[] = [];
      const sub = client.chat.stream.subscribe(
        { message: PROMPT, sessionId: 'link' },
        {
          onData: ({ data }) => {
            if (data.type === 'start') return;
            arrivals.push(performance.now());
            events.push(data);
            if (data.type !== 'delta') {
              sub.unsubscribe();
              resolve({ events, arrivals });
            }
          },
          onError: reject,
        },
      );
    });
    // All at once, so the test takes one reply's time (≈ 4 s at 100 ms a token).
    // And the OpenAI-compatible route, whose chunks carry no ids: count the ones with content.
    const openai = timedRequest(`${nginx.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'accept-encoding': 'gzip' },
      body: JSON.stringify({ model: 'sluice-simulated', stream: true, messages: [{ role: 'user', content: PROMPT }] }),
      event: /"delta":\{"content":"[^"]/,
    });
    const [directSse, proxiedSse, directTrpc, proxiedTrpc, link, proxiedOpenai] = await Promise.all([
      post(sluice.url, 'direct-sse'),
      post(nginx.url, 'proxied-sse'),
      get(sluice.url, 'direct-trpc'),
      get(nginx.url, 'proxied-trpc'),
      viaLink,
      openai,
    ]);

    for (const res of [directSse, proxiedSse, directTrpc, proxiedTrpc, proxiedOpenai]) {
      expect(res.status).toBe(200);
      expect(res.headers['content-type']).toMatch(/^text\/event-stream/);
      expect(res.headers['content-encoding']).toBeUndefined();
    }
    // Byte for byte what a direct connection gets (modulo the generation ids).
    expect(normalizeIds(proxiedSse.body)).toBe(normalizeIds(directSse.body));
    expect(normalizeIds(proxiedTrpc.body)).toBe(normalizeIds(directTrpc.body));
    const frames = parseSse(proxiedSse.body.toString());
    expect(
      frames
        .map((f) => SseMessageData.parse(JSON.parse(f.data)))
        .filter((d) => !d.done)
        .map((d) => d.delta),
    ).toEqual(FULL);
    expect(link.events.filter((e) => e.type === 'delta').map((e) => (e.type === 'delta' ? e.delta : ''))).toEqual(FULL);
    expect(link.events.at(-1)).toMatchObject({ type: 'done', totalChunks: FULL.length });

    // Token by token through nginx, as directly (39 deltas and the done event, 100 ms apart).
    for (const arrivals of [directSse.arrivals, proxiedSse.arrivals, proxiedTrpc.arrivals, link.arrivals]) {
      expectTokenByToken(arrivals, FULL.length + 1);
    }
    expectTokenByToken(proxiedOpenai.arrivals, FULL.length);
    expect(proxiedOpenai.body.toString()).toMatch(/data: \[DONE\]\s*$/);

    // /metrics: denied through nginx, served by the instance itself.
    expect((await fetch(`${nginx.url}/metrics`)).status).toBe(403);
    expect((await fetch(`${nginx.url}/metrics?x=1`)).status).toBe(403);
    expect((await fetch(`${sluice.url}/metrics`)).status).toBe(200);
    expect((await fetch(`${nginx.url}/health`)).status).toBe(200);

    // tRPC over SSE and HTTP put the input in the URL: a 12 KB one passes nginx (its default header
    // buffers, 8 KB, would answer 414), as it passes Node (16 KB).
    const longInput = encodeURIComponent(JSON.stringify({ json: { sessionId: 'long', padding: 'x'.repeat(12_000) } }));
    expect((await fetch(`${nginx.url}/trpc/chat.history?input=${longInput}`)).status).toBe(200);

    // X-Forwarded-For: believed from nginx (TRUSTED_PROXIES=127.0.0.1), and nginx appends the real
    // peer, so a client cannot put another address in front. The client connects from 127.0.0.5.
    const spoofed = { 'x-forwarded-for': '203.0.113.66' };
    await timedRequest(`${nginx.url}/v1/sessions/ip-proxied/messages`, { headers: spoofed, localAddress: '127.0.0.5' });
    await timedRequest(`${sluice.url}/v1/sessions/ip-direct/messages`, { headers: spoofed, localAddress: '127.0.0.5' });
    await vi.waitFor(() => {
      const requests = logLines(sluice).filter((l) => l['msg'] === 'request' && String(l['path']).startsWith('/v1/sessions/ip-'));
      expect(requests.map((r) => [r['path'], r['clientIp']])).toEqual([
        ['/v1/sessions/ip-proxied/messages', '127.0.0.5'],
        ['/v1/sessions/ip-direct/messages', '127.0.0.5'],
      ]);
    });
  });

  it('carries tRPC over WebSocket: the typed client and the chat page stream over it', async () => {
    const sluice = await startSluiceProcess({ SIM_DELAY_MS: 10 });
    const nginx = await startNginx('nginx.conf', [sluice.url]);
    if (!nginx) return;
    const client = createChatClient({ url: nginx.url, transport: 'auto' });
    const events: StreamEvent[] = [];
    for await (const event of streamChat(client, { message: PROMPT, sessionId: 'ws' })) events.push(event);
    expect(chatClientTransport(client)).toBe('ws');
    expect(events.filter((e) => e.type === 'delta').length).toBe(FULL.length);
    expect(events.at(-1)).toMatchObject({ type: 'done', totalChunks: FULL.length });
    expect((await client.chat.history.query({ sessionId: 'ws' })).messages.map((m) => m.status)).toEqual(['complete', 'complete']);
    expect(await metric(sluice, 'sluice_generations_total', { transport: 'trpc-ws' })).toBe(1);
    await closeChatClient(client);

    const browser = await openPage(`${nginx.url}/?session=nginx-ws`);
    if (!browser) return;
    const { page } = browser;
    await expect.poll(() => page.locator('#transport').getAttribute('data-transport')).toBe('ws');
    await page.locator('#message').fill('hello through nginx');
    await page.locator('#message').press('Enter');
    const last = page.locator('#messages li[data-role="assistant"]').last();
    await expect.poll(() => last.getAttribute('data-status'), { timeout: 15_000 }).toBe('complete');
    expect(await last.locator('.text').textContent()).toBe(reply('hello through nginx'));
    expect(browser.errors).toEqual([]);
    await browser.close();
  });

  it('with WebSocket upgrades refused (nginx-no-websocket.conf), the typed client and the page fall back to SSE by themselves', async () => {
    const sluice = await startSluiceProcess({ SIM_DELAY_MS: 10 });
    const nginx = await startNginx('nginx-no-websocket.conf', [sluice.url]);
    if (!nginx) return;
    // nginx itself answers the upgrade with 403.
    const status = await new Promise<number>((resolve, reject) => {
      const req = request(`${nginx.url}/trpc`, {
        headers: { connection: 'Upgrade', upgrade: 'websocket', 'sec-websocket-version': '13', 'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZQ==' },
      });
      req.on('response', (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      });
      req.on('upgrade', () => reject(new Error('the upgrade went through')));
      req.on('error', reject);
      req.end();
    });
    expect(status).toBe(403);

    // A long connect timeout: the fallback must come from the refusal, not from the timer.
    const transports: string[] = [];
    const client = createChatClient({ url: nginx.url, transport: 'auto', wsConnectTimeoutMs: 60_000, onTransport: (t) => transports.push(t) });
    const events: StreamEvent[] = [];
    for await (const event of streamChat(client, { message: PROMPT, sessionId: 'fallback' })) events.push(event);
    expect(chatClientTransport(client)).toBe('sse');
    expect(transports).toEqual(['sse']);
    expect(
      events
        .filter((e) => e.type === 'delta')
        .map((e) => (e.type === 'delta' ? e.delta : ''))
        .join(''),
    ).toBe(reply(PROMPT));
    expect(events.at(-1)).toMatchObject({ type: 'done', totalChunks: FULL.length });
    expect(await metric(sluice, 'sluice_generations_total', { transport: 'trpc-http' })).toBe(1);
    await closeChatClient(client);
    // On SSE a browser's credential and message travel in the query (EventSource sends no headers):
    // the proxy's access log must not keep them.
    const secret = 'sk-in-the-query-0123456789';
    const query = `connectionParams=${encodeURIComponent(JSON.stringify({ apiKey: secret }))}`;
    await (await fetch(`${nginx.url}/trpc/chat.stream?${query}`)).body?.cancel();
    await vi.waitFor(() => expect(nginx.accessLog()).toMatch(/GET \/trpc\/chat\.stream/));
    expect(nginx.accessLog()).not.toContain(secret);
    expect(nginx.accessLog()).not.toContain('connectionParams');

    const browser = await openPage(`${nginx.url}/?session=nginx-sse`);
    if (!browser) return;
    const { page } = browser;
    await expect.poll(() => page.locator('#transport').getAttribute('data-transport')).toBe('sse');
    expect(await page.locator('#transport').textContent()).toBe('SSE (WebSocket unavailable)');
    await page.locator('#message').fill('hello over sse');
    await page.locator('#message').press('Enter');
    const last = page.locator('#messages li[data-role="assistant"]').last();
    await expect.poll(() => last.getAttribute('data-status'), { timeout: 15_000 }).toBe('complete');
    expect(await last.locator('.text').textContent()).toBe(reply('hello over sse'));
    expect(browser.errors).toEqual([]);
    await browser.close();
  });
});

describe('two Sluice instances on one Redis behind nginx round robin', () => {
  it.each(['ws', 'sse'] as const)(
    'over %s: a client cut off mid-reply reconnects through nginx, lands on the other instance and resumes exactly once; history is the same everywhere',
    async (transport) => {
      const set = await cluster({ SIM_DELAY_MS: 50, RESUME_GRACE_MS: 15_000 });
      if (!set) return;
      const { a, b, nginx } = set;
      // Cut between the client and nginx, as a network blip would.
      const proxy = await startTcpProxy(nginx.url);
      const client = createChatClient({ url: proxy.url, transport });
      const events: StreamEvent[] = [];
      const connection: string[] = [];
      let roles: { running: SluiceProcess; other: SluiceProcess } | undefined;
      for await (const event of streamChat(client, { message: PROMPT, sessionId: `cut-${transport}`, onConnection: (s) => connection.push(s) })) {
        events.push(event);
        if (event.type === 'delta' && event.index === 5 && !roles) {
          roles = await runner(a, b);
          proxy.dropAll();
        }
      }
      expect(connection).toEqual(['lost', 'resumed']);
      // Every delta once, in order, then done: resumed, not restarted.
      const deltas = events.filter((e) => e.type === 'delta');
      expect(deltas.map((e) => (e.type === 'delta' ? e.index : 0))).toEqual(FULL.map((_, i) => i + 1));
      expect(deltas.map((e) => (e.type === 'delta' ? e.delta : '')).join('')).toBe(FULL.join(''));
      expect(events.at(-1)).toMatchObject({ type: 'done', totalChunks: FULL.length });

      // The reconnect went to the other instance, which followed the reply through Redis.
      const { running, other } = roles!;
      const kind = transport === 'ws' ? 'trpc-ws' : 'trpc-http';
      expect(await metric(other, 'sluice_resumes_total', { transport: kind })).toBe(1);
      expect(await metric(running, 'sluice_resumes_total')).toBe(0);
      expect(await metric(running, 'sluice_generations_total', { outcome: 'completed' })).toBe(1);
      expect(await metric(other, 'sluice_generations_total')).toBe(0);

      // History: the same through nginx (twice: one answer from each instance) and from each directly.
      const sessionId = `cut-${transport}`;
      const answers = [
        await client.chat.history.query({ sessionId }),
        await client.chat.history.query({ sessionId }),
        await history(nginx.url, sessionId),
        await history(nginx.url, sessionId),
        await history(a.url, sessionId),
        await history(b.url, sessionId),
      ];
      for (const answer of answers) expect(answer).toEqual(answers[0]);
      expect(answers[0]!.messages.map((m) => [m.role, m.status, m.content])).toEqual([
        ['user', 'complete', PROMPT],
        ['assistant', 'complete', reply(PROMPT)],
      ]);
      // Round robin: of the two requests through nginx, one went to each instance (the log lines
      // are written when each response closes).
      const historyHits = (i: SluiceProcess) => logLines(i).filter((l) => l['msg'] === 'request' && l['path'] === `/v1/sessions/${sessionId}/messages`).length;
      await vi.waitFor(() => expect([historyHits(a), historyHits(b)]).toEqual([2, 2]));
      await closeChatClient(client);
    },
  );

  it('a cancel sent through nginx stops the reply, whichever instance runs it', async () => {
    const set = await cluster({ SIM_DELAY_MS: 50, RESUME_GRACE_MS: 15_000 });
    if (!set) return;
    const { a, b, nginx } = set;
    const res = await fetch(`${nginx.url}/v1/chat/stream`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: sseBody('cancel-me') });
    const decoder = new TextDecoder();
    let text = '';
    let cancelled: unknown;
    let roles: { running: SluiceProcess; other: SluiceProcess } | undefined;
    for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
      text += decoder.decode(chunk, { stream: true });
      if (!roles && parseSse(text).length >= 3) {
        roles = await runner(a, b);
        const answer = await fetch(`${nginx.url}/v1/chat/cancel`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ session_id: 'cancel-me' }),
        });
        cancelled = await answer.json();
      }
    }
    expect(cancelled).toEqual({ cancelled: true });
    const frames = parseSse(text);
    expect(frames.at(-1)!.event).toBe('error');
    expect(frames.length).toBeLessThan(FULL.length);
    const { partial } = SseErrorData.parse(JSON.parse(frames.at(-1)!.data));
    // The cancel reached the other instance (round robin), which told the running one through Redis.
    const cancels = (i: SluiceProcess) => logLines(i).filter((l) => l['msg'] === 'request' && l['path'] === '/v1/chat/cancel').length;
    await vi.waitFor(() => expect([cancels(roles!.running), cancels(roles!.other)]).toEqual([0, 1]));
    expect(await metric(roles!.running, 'sluice_generations_total', { outcome: 'cancelled' })).toBe(1);
    const stored = await history(nginx.url, 'cancel-me');
    expect(stored.messages[1]).toMatchObject({ role: 'assistant', status: 'interrupted', content: partial });
  });

  it('an instance killed mid-reply: clients resuming through nginx get the `interrupted` error, history keeps the partials, the survivor serves', async () => {
    const set = await cluster({ SIM_DELAY_MS: 50, RESUME_GRACE_MS: 5000, LIVENESS_TTL_MS: 1500 });
    if (!set) return;
    const { a, b, nginx } = set;
    // Long replies (about 100 tokens, 5 s), so that none ends before the kill even on a busy machine.
    const LONG = `${PROMPT} ${Array.from({ length: 60 }, (_, i) => `word${i}`).join(' ')}`;
    const LONG_DELTAS = simulatedDeltas(LONG).length;
    const post = (sessionId: string, message = LONG, signal?: AbortSignal) =>
      fetch(`${nginx.url}/v1/chat/stream`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: sseBody(sessionId, message), signal });
    // Four replies on one instance, steered by nginx's rotation (one worker, strict round robin):
    // the typed client's WebSocket is request 1, a request to the other instance comes between
    // each of the rest. 1: typed client (it will resume by itself); 3: the SSE route (the client
    // resumes with Last-Event-ID); 5 and 7: SSE clients that leave for good.
    const client = createChatClient({ url: nginx.url, transport: 'ws' });
    const events: StreamEvent[] = [];
    const typed = (async () => {
      for await (const event of streamChat(client, { message: LONG, sessionId: 'killed-ws' })) events.push(event);
    })();
    await vi.waitFor(() => expect(events.length).toBeGreaterThan(0));
    expect((await fetch(`${nginx.url}/health`)).status).toBe(200);
    const res = await post('killed-sse');
    expect((await fetch(`${nginx.url}/health`)).status).toBe(200);
    const abandon = async (sessionId: string): Promise<void> => {
      const leaving = new AbortController();
      const abandoned = await post(sessionId, LONG, leaving.signal);
      const firstChunk = await (abandoned.body as ReadableStream<Uint8Array>).getReader().read();
      expect(new TextDecoder().decode(firstChunk.value)).toContain('chunk_index');
      leaving.abort();
    };
    await abandon('killed-gone');
    expect((await fetch(`${nginx.url}/health`)).status).toBe(200);
    await abandon('killed-cancel');
    const [ra, rb] = await Promise.all([metric(a, 'sluice_running_generations'), metric(b, 'sluice_running_generations')]);
    expect([ra, rb].sort()).toEqual([0, 4]);
    const [victim, survivor] = ra === 4 ? [a, b] : [b, a];

    // Read the SSE route until a few deltas are in, then kill the instance that runs the replies.
    const decoder = new TextDecoder();
    let text = '';
    const reader = (res.body as ReadableStream<Uint8Array>).getReader();
    while (parseSse(text).length < 3) text += decoder.decode((await reader.read()).value, { stream: true });
    await victim.stop('SIGKILL');
    // nginx ends the cut stream; whatever was read is what the client has.
    for (;;) {
      const r = await reader.read().catch(() => ({ done: true as const, value: undefined }));
      if (r.done) break;
      text += decoder.decode(r.value, { stream: true });
    }
    const head = parseSse(text).filter((f) => f.event === 'message');
    expect(head.length).toBeGreaterThanOrEqual(3);
    expect(head.length).toBeLessThan(LONG_DELTAS);

    // The documented route: resume with the last id, through nginx (it skips the dead instance).
    const resumed = await fetch(`${nginx.url}/v1/chat/stream`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'last-event-id': head.at(-1)!.id! },
      body: sseBody('killed-sse', LONG),
    });
    expect(resumed.status).toBe(200);
    const tail = parseSse(await resumed.text());
    const seen = [...head, ...tail].filter((f) => f.event === 'message').map((f) => SseMessageData.parse(JSON.parse(f.data)));
    expect(seen.map((d) => (d.done ? 0 : d.chunk_index))).toEqual(seen.map((_, i) => i + 1));
    const ending = tail.at(-1)!;
    expect(ending.event).toBe('error');
    const sseError = SseErrorData.parse(JSON.parse(ending.data));
    expect(sseError).toEqual({ message: 'The reply was interrupted', partial: seen.map((d) => d.delta).join('') });

    // The typed client reconnected through nginx by itself and got the same ending.
    await typed;
    const last = events.at(-1)!;
    const deltas = events.filter((e) => e.type === 'delta');
    expect(deltas.map((e) => (e.type === 'delta' ? e.index : 0))).toEqual(deltas.map((_, i) => i + 1));
    expect(deltas.length).toBeLessThan(LONG_DELTAS);
    expect(last).toEqual({
      type: 'error',
      code: 'interrupted',
      message: 'The reply was interrupted',
      partial: deltas.map((e) => (e.type === 'delta' ? e.delta : '')).join(''),
      // What the dead instance's reply consumed, estimated by the survivor that ended it.
      usage: { promptTokens: expect.any(Number) as number, completionTokens: expect.any(Number) as number, estimated: true },
    });
    await closeChatClient(client);

    // History keeps both partial replies, marked interrupted.
    for (const [sessionId, partial] of [
      ['killed-sse', sseError.partial],
      ['killed-ws', last.type === 'error' ? last.partial : ''],
    ] as const) {
      const stored = await history(nginx.url, sessionId);
      expect(stored.messages.map((m) => [m.role, m.status, m.content])).toEqual([
        ['user', 'complete', LONG],
        ['assistant', 'interrupted', partial],
      ]);
    }
    // The sessions are free again, and the survivor serves everything nginx sends.
    for (let i = 0; i < 4; i++) expect((await fetch(`${nginx.url}/health`)).status).toBe(200);
    // nginx did meet the dead instance, and moved each such request on to the survivor.
    expect(nginx.output()).toMatch(/Connection refused\) while connecting to upstream/);
    const nextReply = async (sessionId: string): Promise<void> => {
      let res: Response | undefined;
      // Once the dead instance's liveness mark has expired; 409 session_busy until then.
      await vi.waitFor(
        async () => {
          res = await post(sessionId, 'after the crash');
          expect(res.status).toBe(200);
        },
        { timeout: 10_000, interval: 200 },
      );
      expect(JSON.parse(parseSse(await res!.text()).at(-1)!.data)).toMatchObject({ done: true });
    };
    // Nobody came back for the third reply: its session's next message stores the partial reply
    // first. A cancel does the same for the fourth: `true` while the dead instance's liveness mark
    // lasts (nobody can tell yet), then `false` (nothing is running).
    await Promise.all([
      nextReply('killed-sse'),
      nextReply('killed-gone'),
      vi.waitFor(
        async () => {
          const res = await fetch(`${nginx.url}/v1/chat/cancel`, {
            method: 'POST',
            headers: { 'content-type': 'application/json' },
            body: JSON.stringify({ session_id: 'killed-cancel' }),
          });
          expect(await res.json()).toEqual({ cancelled: false });
        },
        { timeout: 10_000, interval: 200 },
      ),
    ]);
    const gone = await history(nginx.url, 'killed-gone');
    expect(gone.messages.map((m) => [m.role, m.status])).toEqual([
      ['user', 'complete'],
      ['assistant', 'interrupted'],
      ['user', 'complete'],
      ['assistant', 'complete'],
    ]);
    expect(gone.messages[1]!.content.length).toBeGreaterThan(0);
    expect(reply(LONG).startsWith(gone.messages[1]!.content)).toBe(true);
    expect(await metric(survivor, 'sluice_generations_total', { outcome: 'completed' })).toBe(2);
    expect((await history(nginx.url, 'killed-cancel')).messages.map((m) => [m.role, m.status])).toEqual([
      ['user', 'complete'],
      ['assistant', 'interrupted'],
    ]);
  });
});
