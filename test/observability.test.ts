import { describe, expect, it, vi } from 'vitest';
import { captureLogs } from './helpers/logs.ts';
import { startServer } from './helpers/server.ts';
import { streamSseRoute } from './helpers/sse.ts';
import { collectStream, stockClient } from './helpers/trpc-clients.ts';

/** The value of one sample in Prometheus exposition text (0 when absent). */
function sample(text: string, name: string, labels: Record<string, string> = {}): number {
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue;
    const match = /^([a-z_]+)(?:\{([^}]*)\})? (\S+)$/.exec(line);
    if (!match || match[1] !== name) continue;
    const have = Object.fromEntries(
      (match[2] ?? '')
        .split(',')
        .filter(Boolean)
        .map((kv) => {
          const [k, v] = kv.split('=');
          return [k, v!.replace(/^"|"$/g, '')];
        }),
    );
    if (Object.entries(labels).every(([k, v]) => have[k] === v)) return Number(match[3]);
  }
  return 0;
}

const KEY = 'observe-key-0123456789abcdef';

describe('metrics and logs', () => {
  it('/metrics counters and histograms move with streams; process metrics are there', async () => {
    const { url } = await startServer({ SIM_DELAY_MS: 1 });
    const scrape = async () => {
      const res = await fetch(`${url}/metrics`);
      expect(res.status).toBe(200);
      expect(res.headers.get('content-type')).toMatch(/text\/plain/);
      return res.text();
    };
    const before = await scrape();
    expect(before).toContain('sluice_process_cpu_user_seconds_total');

    for await (const _ of streamSseRoute(url, { message: 'one', session_id: 'm1' })) void _;
    const { client } = stockClient(url, 'ws');
    await collectStream(client, { message: 'two', sessionId: 'm2' });
    // A cancelled reply, and a refused one.
    const slow = streamSseRoute(url, { message: 'three '.repeat(50), session_id: 'm3' });
    await slow.next();
    await fetch(`${url}/v1/chat/cancel`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"session_id":"m3"}' });
    for await (const _ of slow) void _;
    await fetch(`${url}/v1/chat/stream`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"message":""}' });

    const after = await scrape();
    expect(sample(after, 'sluice_generations_total', { outcome: 'completed', transport: 'sse' })).toBe(1);
    expect(sample(after, 'sluice_generations_total', { outcome: 'completed', transport: 'trpc-ws' })).toBe(1);
    expect(sample(after, 'sluice_generations_total', { outcome: 'cancelled', transport: 'sse' })).toBe(1);
    // One-word prompts: 38 deltas each, plus the done event.
    expect(sample(after, 'sluice_deltas_total')).toBeGreaterThanOrEqual(76);
    expect(sample(after, 'sluice_events_sent_total', { transport: 'sse' })).toBeGreaterThanOrEqual(39);
    // tRPC also sends `start` first.
    expect(sample(after, 'sluice_events_sent_total', { transport: 'trpc-ws' })).toBe(40);
    expect(sample(after, 'sluice_time_to_first_delta_seconds_count')).toBe(3);
    // Gaps are observed once per generation of two tokens or more (the cancelled one may have had one).
    const paced = sample(after, 'sluice_time_per_delta_seconds_count');
    expect(paced).toBeGreaterThanOrEqual(2);
    expect(paced).toBeLessThanOrEqual(3);
    expect(sample(after, 'sluice_max_delta_gap_seconds_count')).toBe(paced);
    expect(sample(after, 'sluice_max_delta_gap_seconds_sum')).toBeGreaterThanOrEqual(sample(after, 'sluice_time_per_delta_seconds_sum'));
    expect(sample(after, 'sluice_rejected_requests_total', { reason: 'invalid_request' })).toBe(1);
    expect(sample(after, 'sluice_active_streams', { transport: 'sse' })).toBe(0);
    expect(sample(after, 'sluice_open_connections', { transport: 'ws' })).toBe(1);
    expect(sample(after, 'sluice_running_generations')).toBe(0);
    expect(sample(before, 'sluice_deltas_total')).toBe(0);
  });

  it('with keys on, /metrics needs one too, as every route but the health checks and the chat page', async () => {
    const { url } = await startServer({ API_KEYS: KEY });
    expect((await fetch(`${url}/metrics`)).status).toBe(401);
    expect((await fetch(`${url}/metrics`, { headers: { authorization: 'Bearer wrong-key-0123456789abcdef' } })).status).toBe(401);
    const scrape = await fetch(`${url}/metrics`, { headers: { authorization: `Bearer ${KEY}` } });
    expect(scrape.status).toBe(200);
    expect(await scrape.text()).toContain('sluice_open_connections');
    for (const path of ['/health', '/ready', '/']) expect((await fetch(`${url}${path}`)).status).toBe(200);
  });

  it('a request that fails inside Sluice answers 500 with no detail, and its error is logged once, whichever step failed', async () => {
    const { logger, lines } = captureLogs('info');
    const credentials = {
      required: true,
      ownerOf: async () => {
        throw new TypeError('boom inside the credential check');
      },
    };
    const { url } = await startServer({}, { logger, credentials });
    for (const res of [
      await fetch(`${url}/v1/sessions/s/messages`, { headers: { authorization: 'Bearer x' } }),
      await fetch(`${url}/v1/chat/stream`, {
        method: 'POST',
        headers: { authorization: 'Bearer x', 'content-type': 'application/json' },
        body: '{"message":"hi"}',
      }),
    ]) {
      expect(res.status).toBe(500);
      expect(await res.json()).toEqual({ error: { code: 'internal', message: 'Internal error' } });
    }
    await vi.waitFor(() => expect(lines.filter((l) => l['msg'] === 'request')).toHaveLength(2));
    const errors = lines.filter((l) => l['level'] === 50);
    expect(errors).toHaveLength(2);
    for (const line of errors) expect(JSON.stringify(line['err'])).toContain('boom inside the credential check');
  });

  it('one log line per request and per generation, without message contents or keys at the default level', async () => {
    const { logger, lines } = captureLogs('info');
    const { url } = await startServer({ API_KEYS: KEY }, { logger });
    const secret = 'my very private question';
    for await (const _ of streamSseRoute(url, { message: secret, session_id: 'logs' }, { headers: { authorization: `Bearer ${KEY}` } })) void _;
    const { createChatClient, closeChatClient, streamChat } = await import('../client/index.ts');
    const client = createChatClient({ url, transport: 'sse', apiKey: KEY });
    for await (const _ of streamChat(client, { message: secret, sessionId: 'logs2' })) void _;
    await closeChatClient(client);

    const requests = lines.filter((l) => l['msg'] === 'request');
    const generations = lines.filter((l) => l['msg'] === 'generation finished');
    expect(generations).toHaveLength(2);
    for (const g of generations) {
      expect(g).toMatchObject({ generationId: expect.any(String), sessionId: expect.any(String), outcome: 'completed', deltas: 41 });
      expect(g['durationMs']).toEqual(expect.any(Number));
    }
    expect(requests.find((r) => r['path'] === '/v1/chat/stream')).toMatchObject({ method: 'POST', status: 200, owner: expect.stringMatching(/^k_/) });
    expect(requests.some((r) => r['path'] === '/trpc/chat.stream')).toBe(true);
    const all = JSON.stringify(lines);
    expect(all).not.toContain('private question');
    expect(all).not.toContain(KEY);
  });
});
