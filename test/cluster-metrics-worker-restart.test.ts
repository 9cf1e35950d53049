import { describe, expect, it, vi } from 'vitest';
import { startSluiceProcess } from './helpers/process.ts';
import { startRedis } from './helpers/redis.ts';
import { rawRequest } from './helpers/sse.ts';

// e1cd648: with WORKERS a scrape is answered by asking the primary, which asks every worker in
// cluster.workers (prom-client's AggregatorRegistry) and fails the whole collection when one does
// not answer within 5 s. A worker being started (a replacement, after a crash) is in that list and
// connected before it listens for the request: the request is lost, and every scrape made while
// any worker (re)starts is a 503 after 5 s. (prom-client also keeps each such request in its map
// for good: the primary's memory grows by one collection of the other workers' metrics per scrape.)

describe('metrics with WORKERS while a worker is being replaced', () => {
  it('a scrape answers 200 with the serving workers while the replacement starts', async () => {
    const redis = await startRedis();
    if (!redis) return;
    const sluice = await startSluiceProcess({ REDIS_URL: redis.url, WORKERS: 2, SIM_DELAY_MS: 0 });
    await vi.waitFor(() => expect(sluice.output()).toContain('"workers":2'), { timeout: 20_000 });
    expect((await rawRequest(`${sluice.url}/metrics`, { method: 'GET', headers: { connection: 'close' } })).status).toBe(200);
    const pid = Number(/"pid":(\d+)/.exec(sluice.output())![1]);
    process.kill(pid, 'SIGKILL');
    // The primary forks the replacement as it learns of the death (and says so).
    await vi.waitFor(() => expect(sluice.output()).toContain('worker exited; starting another'), { timeout: 10_000 });
    const started = Date.now();
    const res = await rawRequest(`${sluice.url}/metrics`, { method: 'GET', headers: { connection: 'close' } });
    expect(res.status, `answered after ${Date.now() - started} ms`).toBe(200);
    expect(await sluice.stop('SIGTERM')).toBe(0);
  }, 60_000);
});
