import { Redis } from 'ioredis';
import { describe, expect, it, vi } from 'vitest';
import { serializeError } from '../server/observability/logger.ts';
import { startFakeUpstream } from './helpers/fake-upstream.ts';
import { startSluiceProcess } from './helpers/process.ts';
import { startRedis } from './helpers/redis.ts';
import { drain, streamSseRoute } from './helpers/sse.ts';

// What the logs may hold: no secret of the operator's (store passwords, the upstream's key), and
// no more than a bounded excerpt of what an upstream answers, however large.

describe('logs', () => {
  it("never hold the Redis password, not even when Redis refuses Sluice's login", async () => {
    const redis = await startRedis();
    if (!redis) return;
    const admin = new Redis(redis.port, '127.0.0.1', { lazyConnect: true });
    admin.on('error', () => undefined);
    await admin.connect();
    await admin.config('SET', 'requirepass', 'REDIS-PASSWORD-PLANTED');
    await admin.auth('REDIS-PASSWORD-PLANTED');
    const url = `redis://:REDIS-PASSWORD-PLANTED@127.0.0.1:${redis.port}`;
    const sluice = await startSluiceProcess({ REDIS_URL: url, STORE: 'memory' });
    // The password changes on Redis's side (a rotation) and Sluice's connections are cut: it logs in again, and is refused.
    await admin.config('SET', 'requirepass', 'another-password');
    await admin.client('KILL', 'TYPE', 'normal', 'SKIPME', 'yes');
    await vi.waitFor(() => expect(sluice.output()).toMatch(/WRONGPASS/), { timeout: 10_000 });
    expect(sluice.output()).not.toContain('REDIS-PASSWORD-PLANTED');
    admin.disconnect();
    await sluice.stop();
  });

  it("leave every line as it was when a secret is a short, common word (a password such as 'sluice')", async () => {
    const sluice = await startSluiceProcess({ OPENAI_API_KEY: 'sluice' });
    const lines = sluice.output().trim().split('\n');
    expect(lines.length).toBeGreaterThan(0);
    for (const line of lines) expect(JSON.parse(line)).toMatchObject({ service: 'sluice' });
    await sluice.stop();
  });

  it('serialize any error a library throws without throwing, and bounded: odd messages, plain objects, circular causes', () => {
    const odd = new Error('x');
    (odd as { message: unknown }).message = { not: 'a string' };
    expect(() => serializeError(odd)).not.toThrow();
    const plain = { config: { headers: { authorization: 'Bearer abc' } }, body: 'y'.repeat(100_000) };
    expect(JSON.stringify(serializeError(plain)).length).toBeLessThan(4000);
    const loop = new Error('loop');
    (loop as { cause?: unknown }).cause = loop;
    expect(JSON.stringify(serializeError(loop)).length).toBeLessThan(10_000);
  });

  it('keep a bounded part of a long path: a request line does not become a log line as long', async () => {
    const sluice = await startSluiceProcess({});
    const before = sluice.output().length;
    const response = await fetch(`${sluice.url}/${'p'.repeat(12_000)}`);
    expect(response.status).toBe(404);
    await response.text();
    await vi.waitFor(() => expect(sluice.output().slice(before)).toMatch(/"msg":"request"/));
    const line = sluice
      .output()
      .slice(before)
      .split('\n')
      .find((l) => l.includes('"msg":"request"'))!;
    expect(line.length).toBeLessThan(1500);
    await sluice.stop();
  });

  it("never hold the upstream's key, and keep a bounded excerpt of a large upstream error", async () => {
    const key = 'sk-PLANTED-upstream-key-0123456789';
    const upstream = await startFakeUpstream({ kind: 'status', status: 500, message: `Incorrect API key provided: ${key}. ${'detail '.repeat(10_000)}` });
    const sluice = await startSluiceProcess({
      LLM_PROVIDER: 'openai',
      OPENAI_BASE_URL: upstream.baseURL,
      OPENAI_API_KEY: key,
      LLM_MODEL: 'm',
      UPSTREAM_MAX_RETRIES: 0,
    });
    const before = sluice.output().length;
    const frames = await drain(streamSseRoute(sluice.url, { message: 'hi', session_id: 'echo' })).catch(() => []);
    expect(frames.length).toBeGreaterThanOrEqual(0);
    await vi.waitFor(() => expect(sluice.output().slice(before)).toMatch(/generation (failed|finished)/));
    const logged = sluice.output().slice(before);
    expect(logged).not.toContain(key);
    // The upstream sent 70 KB of error text: a request's log lines keep a few KB of it at most.
    expect(logged.length).toBeLessThan(12_000);
    await sluice.stop();
    await upstream.close();
  });
});
