import { describe, expect, it, vi } from 'vitest';
import { startSluiceProcess } from './helpers/process.ts';
import { startRedis } from './helpers/redis.ts';
import { metricTotal } from './helpers/metrics-text.ts';
import { parseSse, rawRequest } from './helpers/sse.ts';

describe('metrics with WORKERS', () => {
  it("GET /metrics on the service's one port counts the replies of every worker, whichever worker answers the scrape", async () => {
    const redis = await startRedis();
    if (!redis) return;
    const sluice = await startSluiceProcess({ REDIS_URL: redis.url, WORKERS: 2, SIM_DELAY_MS: 0 });
    await vi.waitFor(() => expect(sluice.output()).toContain('"workers":2'), { timeout: 20_000 });
    // Keep-alive off: each request is a new connection, which the primary hands to a worker in turn.
    const headers = { 'content-type': 'application/json', connection: 'close' };
    const replies = 6;
    for (let i = 0; i < replies; i++) {
      const res = await rawRequest(`${sluice.url}/v1/chat/stream`, { headers, body: JSON.stringify({ message: `turn ${i}`, session_id: `m${i}` }) });
      expect(JSON.parse(parseSse(res.body.toString()).at(-1)!.data)).toMatchObject({ done: true });
    }
    // Both workers served replies (their lines name two pids): the case this test is about.
    const pids = () => new Set([...sluice.output().matchAll(/"pid":(\d+)[^\n]*"generation finished"/g)].map((m) => m[1]));
    await vi.waitFor(() => expect(pids().size).toBe(2));

    // A scraper has one target, the service's port; the primary hands each scrape to some worker.
    const seen: number[] = [];
    for (let i = 0; i < 4; i++) {
      const res = await rawRequest(`${sluice.url}/metrics`, { method: 'GET', headers: { connection: 'close' } });
      expect(res.status).toBe(200);
      seen.push(metricTotal(res.body.toString(), 'sluice_generations_total', { outcome: 'completed' }));
    }
    // Each scrape must count all six replies: a counter that reads 3, then 3 from the other worker
    // (or 2 then 4) looks to Prometheus like resets, and rate()/increase() over it are wrong.
    expect(seen).toEqual([replies, replies, replies, replies]);
    expect(await sluice.stop('SIGTERM')).toBe(0);
  });
});
