import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { describe, expect, it, vi } from 'vitest';
import { SessionHistory } from '../shared/index.ts';
import { startSluiceProcess } from './helpers/process.ts';
import { startRedis } from './helpers/redis.ts';
import { parseSse, rawRequest } from './helpers/sse.ts';

describe('one process per core (WORKERS)', () => {
  it('several workers share one port and one Redis; SIGTERM stops them all cleanly', async () => {
    const redis = await startRedis();
    if (!redis) return;
    const sluice = await startSluiceProcess({ REDIS_URL: redis.url, WORKERS: 2, SIM_DELAY_MS: 0 });
    await vi.waitFor(() => expect(sluice.output()).toContain('"workers":2'), { timeout: 20_000 });
    // Keep-alive off: each reply is a new connection, which the primary hands to a worker in turn.
    const headers = { 'content-type': 'application/json', connection: 'close' };
    for (let i = 0; i < 8; i++) {
      const res = await rawRequest(`${sluice.url}/v1/chat/stream`, { headers, body: JSON.stringify({ message: `turn ${i}`, session_id: 'shared' }) });
      expect(res.status).toBe(200);
      expect(JSON.parse(parseSse(res.body.toString()).at(-1)!.data)).toMatchObject({ done: true });
    }
    const historyRes = await rawRequest(`${sluice.url}/v1/sessions/shared/messages`, { method: 'GET', headers: { connection: 'close' } });
    const history = SessionHistory.parse(JSON.parse(historyRes.body.toString()));
    expect(history.messages).toHaveLength(16);
    // Both workers served: their reply lines name two pids. Log lines go out in batches (up to
    // 100 ms later), so they are waited for.
    const pids = () => new Set([...sluice.output().matchAll(/"pid":(\d+)[^\n]*"generation finished"/g)].map((m) => m[1]));
    await vi.waitFor(() => expect(pids().size).toBe(2));
    expect(await sluice.stop('SIGTERM')).toBe(0);
  });

  it('refuses WORKERS > 1 without Redis, naming the problem', async () => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'server/main.ts'], {
      cwd: fileURLToPath(new URL('..', import.meta.url)),
      env: { ...process.env, WORKERS: '2', PORT: '0', REDIS_URL: '' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let err = '';
    child.stderr.on('data', (c: Buffer) => (err += c.toString()));
    const [code] = await once(child, 'exit');
    expect(code).toBe(2);
    expect(err).toMatch(/WORKERS > 1 needs REDIS_URL/);
  });
});
