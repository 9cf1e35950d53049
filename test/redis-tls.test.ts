import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { SessionHistory } from '../shared/index.ts';
import { startSluiceProcess, type SluiceProcess } from './helpers/process.ts';
import { makeTestCa, startCluster, startSentinels, startTlsRedis, type TestCa } from './helpers/redis-topologies.ts';
import { startServer } from './helpers/server.ts';
import { drain, streamSseRoute } from './helpers/sse.ts';

// Redis over TLS, as managed services require: a CA made with openssl for the test, redis-servers
// that speak TLS only, and Sluice (real processes, then instances in the test's process) given
// `rediss://` (or Sentinels, or Cluster nodes) and REDIS_TLS_CA_FILE.

let ca: TestCa | undefined;
beforeAll(async () => {
  ca = await makeTestCa();
}, 30_000);
const processes: SluiceProcess[] = [];
afterAll(async () => {
  for (const sluice of processes) await sluice.stop('SIGKILL');
});

async function start(env: Record<string, string | number>): Promise<SluiceProcess> {
  const sluice = await startSluiceProcess({ SIM_DELAY_MS: 0, ...env });
  processes.push(sluice);
  return sluice;
}

/** A turn on `a` is in `b`'s history: both share the store through TLS. */
async function expectShared(a: { url: string }, b: { url: string }, session: string): Promise<void> {
  const frames = await drain(streamSseRoute(a.url, { message: 'over tls', session_id: session }));
  expect(JSON.parse(frames.at(-1)!.data)).toMatchObject({ done: true });
  const history = SessionHistory.parse(await (await fetch(`${b.url}/v1/sessions/${session}/messages`)).json());
  expect(history.messages.map((m) => [m.role, m.status])).toEqual([
    ['user', 'complete'],
    ['assistant', 'complete'],
  ]);
}

describe('Redis over TLS', () => {
  it('rediss:// with REDIS_TLS_CA_FILE: two instances share the store; without the CA the server is not trusted', async () => {
    if (!ca) return;
    const redis = await startTlsRedis(ca);
    if (!redis) return;
    const env = { REDIS_URL: redis.url, REDIS_TLS_CA_FILE: ca.caFile };
    // The third one is not given the CA.
    const [a, b, untrusting] = await Promise.all([start(env), start(env), start({ REDIS_URL: redis.url })]);
    await expectShared(a, b, 'tls');

    // The system's authorities do not know the test CA: no connection, so not ready, and a clear 503.
    expect((await fetch(`${untrusting.url}/ready`)).status).toBe(503);
    const res = await fetch(`${untrusting.url}/v1/chat/stream`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"message":"x"}' });
    expect(res.status).toBe(503);
    await vi.waitFor(() => expect(untrusting.output()).toMatch(/self-signed certificate[^\n]*redis unreachable/));
  });

  it('refuses a CA file with a redis:// URL, and names a CA file it cannot read', async () => {
    if (!ca) return;
    const plain = startSluiceProcess({ REDIS_URL: 'redis://127.0.0.1:1', REDIS_TLS_CA_FILE: ca.caFile });
    await expect(plain).rejects.toThrow(/REDIS_URL: must be rediss:\/\/ \(TLS\) when REDIS_TLS_CA_FILE is set/);
    const missing = join(ca.dir, 'nope.crt');
    await expect(startSluiceProcess({ REDIS_URL: 'rediss://127.0.0.1:1', REDIS_TLS_CA_FILE: missing })).rejects.toThrow(new RegExp(`ENOENT.*${missing}`));
  });

  it('a Redis Cluster whose nodes speak TLS (REDIS_CLUSTER_NODES with REDIS_TLS_CA_FILE)', { timeout: 60_000 }, async () => {
    if (!ca) return;
    const cluster = await startCluster({ tls: ca });
    if (!cluster) return;
    const env = { REDIS_CLUSTER_NODES: cluster.nodes, REDIS_TLS_CA_FILE: ca.caFile };
    const [a, b] = [await startServer(env), await startServer(env)];
    await expectShared(a, b, 'tls-cluster');
  });

  it('Sentinels and data nodes that speak TLS (REDIS_SENTINELS with REDIS_TLS_CA_FILE)', { timeout: 60_000 }, async () => {
    if (!ca) return;
    const sentinels = await startSentinels({ tls: ca });
    if (!sentinels) return;
    const env = { REDIS_SENTINELS: sentinels.sentinels, REDIS_SENTINEL_MASTER: sentinels.master, REDIS_TLS_CA_FILE: ca.caFile };
    const [a, b] = [await startServer(env), await startServer(env)];
    await expectShared(a, b, 'tls-sentinel');
  });
});
