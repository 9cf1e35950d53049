import { describe, expect, it, vi } from 'vitest';
import { startSluiceProcess } from './helpers/process.ts';
import { childrenOf } from './helpers/proc.ts';
import { startRedis } from './helpers/redis.ts';

describe('WORKERS: stopping the primary', () => {
  it('SIGTERM while a replacement worker is still starting exits 0: a worker with nothing to drain is a clean stop, not a failure', async () => {
    const redis = await startRedis();
    if (!redis) return;
    const sluice = await startSluiceProcess({ REDIS_URL: redis.url, WORKERS: 2, SIM_DELAY_MS: 0, SHUTDOWN_DRAIN_MS: 1000 });
    await vi.waitFor(() => expect(sluice.output()).toContain('"workers":2'), { timeout: 20_000 });
    // A worker dies (an OOM kill, say); the primary starts another.
    const worker = childrenOf(sluice.child.pid!).find((pid) => sluice.output().includes(`"pid":${pid},`))!;
    process.kill(worker, 'SIGKILL');
    await vi.waitFor(() => expect(sluice.output()).toContain('worker exited; starting another'), { timeout: 10_000 });
    // The operator (systemd, Kubernetes) stops the service while that new worker loads: a clean stop,
    // which must not be reported as a failure (systemd marks the unit failed on exit code 1).
    expect(await sluice.stop('SIGTERM')).toBe(0);
  }, 30_000);
});
