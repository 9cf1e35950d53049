import { once } from 'node:events';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TRPCClientError } from '@trpc/client';
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { AppRouter } from '../server/router-type.ts';
import { buildServer } from '../server/tools/server-bundle.ts';
import { REPO_ROOT, spawnNode } from './helpers/children.ts';
import { startSluiceProcess, type SluiceProcess } from './helpers/process.ts';
import { startRedis } from './helpers/redis.ts';
import { openSseRoute, rawRequest, type SseFrame } from './helpers/sse.ts';
import { collectStream, stockClient } from './helpers/trpc-clients.ts';

// Rotating a key is editing API_KEYS_FILE and sending SIGHUP, the usual "reload": the running
// replies go on, the server keeps serving, and from then on only the file's keys are let in.

const OLD_KEY = 'old-key-0123456789abcdef';
const NEW_KEY = 'new-key-0123456789abcdef';

const running: SluiceProcess[] = [];
afterEach(async () => {
  for (const p of running.splice(0)) await p.stop('SIGKILL');
});

function keysFile(...keys: string[]): string {
  const file = join(mkdtempSync(join(tmpdir(), 'sluice-keys-')), 'keys.txt');
  writeFileSync(file, `${keys.join('\n')}\n`);
  return file;
}

async function statusWith(url: string, key: string): Promise<number> {
  const res = await rawRequest(`${url}/v1/chat/stream`, {
    headers: { 'content-type': 'application/json', authorization: `Bearer ${key}`, connection: 'close' },
    body: JSON.stringify({ message: 'hello', session_id: `s-${Math.random()}` }),
  });
  return res.status;
}

/** Sends SIGHUP and waits for the log line that says how the reload went (the `count`-th such line). */
async function reload(sluice: SluiceProcess, count: number): Promise<string> {
  sluice.child.kill('SIGHUP');
  const lines = () => sluice.output().match(/^.*"(?:reloaded API keys|could not reload API keys[^"]*)".*$/gm) ?? [];
  await vi.waitFor(() => expect(lines().length).toBeGreaterThanOrEqual(count), { timeout: 10_000 });
  return lines()[count - 1]!;
}

describe('API_KEYS_FILE is read again on SIGHUP', () => {
  it('a rotated key is let in and the old one refused on every transport, running replies go on, a bad file changes nothing', async () => {
    const file = keysFile(OLD_KEY);
    const sluice = await startSluiceProcess({ API_KEYS_FILE: file, STORE: 'memory', SIM_DELAY_MS: 30 });
    running.push(sluice);
    const ws = stockClient(sluice.url, 'ws', { apiKey: OLD_KEY });
    expect((await collectStream(ws.client, { message: 'before', sessionId: 'ws' })).events.at(-1)?.type).toBe('done');

    // A reply under way with the old key, when the key is rotated.
    const frames: SseFrame[] = [];
    const stream = openSseRoute(sluice.url, { message: 'explain caching', session_id: 'long' }, { authorization: `Bearer ${OLD_KEY}` }, (f) => frames.push(f));
    await vi.waitFor(() => expect(frames.length).toBeGreaterThan(0));

    writeFileSync(file, `# rotated\n${NEW_KEY}\n`);
    expect(await reload(sluice, 1)).toMatch(/"keys":1/);

    expect(await statusWith(sluice.url, OLD_KEY)).toBe(401);
    expect(await statusWith(sluice.url, NEW_KEY)).toBe(200);
    // The WebSocket signed in with the old key: its next call is refused, as any call with it.
    const refused = await collectStream(ws.client, { message: 'after', sessionId: 'ws' }).catch((error: unknown) => error);
    expect(refused).toBeInstanceOf(TRPCClientError);
    expect((refused as TRPCClientError<AppRouter>).data?.code).toBe('UNAUTHORIZED');
    await ws.close();

    // The reply that was running when the keys changed ends as it would have.
    expect(await stream.done).toBe(200);
    expect(JSON.parse(frames.at(-1)!.data)).toMatchObject({ done: true, total_chunks: 39 });

    // A file that cannot be used keeps the keys in use: no key at all (which would let anyone in
    // were it taken as "keys off"), a key too short, a file gone.
    writeFileSync(file, '# emptied by mistake\n');
    expect(await reload(sluice, 2)).toMatch(/could not reload API keys.*holds no keys/);
    writeFileSync(file, 'short\n');
    expect(await reload(sluice, 3)).toMatch(/could not reload API keys.*at least 16 characters/);
    expect(await statusWith(sluice.url, NEW_KEY)).toBe(200);
    expect(await statusWith(sluice.url, OLD_KEY)).toBe(401);
    expect(await statusWith(sluice.url, 'short')).toBe(401);
    expect(sluice.child.exitCode).toBeNull();
    expect(await sluice.stop('SIGTERM')).toBe(0);
  });

  it('with API_KEYS only (no file) there is nothing to read again: the server says so and keeps serving', async () => {
    const sluice = await startSluiceProcess({ API_KEYS: OLD_KEY, STORE: 'memory', SIM_DELAY_MS: 0 });
    running.push(sluice);
    sluice.child.kill('SIGHUP');
    await vi.waitFor(() => expect(sluice.output()).toContain('nothing to reload'), { timeout: 10_000 });
    expect(await statusWith(sluice.url, OLD_KEY)).toBe(200);
    expect(await sluice.stop('SIGTERM')).toBe(0);
  });

  it('a SIGHUP while the process starts (its store not reachable yet) does not end it: the file is read again once it serves', async () => {
    // The review of this session's change: the handler came after start-up, and Node's own
    // answer to SIGHUP is to exit (129).
    const file = keysFile(OLD_KEY);
    const child = spawnNode(['--import', 'tsx', 'server/main.ts'], {
      env: {
        ...process.env,
        PORT: '0',
        LOG_LEVEL: 'info',
        API_KEYS_FILE: file,
        REDIS_URL: 'redis://127.0.0.1:1',
        DATA_DIR: mkdtempSync(join(tmpdir(), 'sluice-data-')),
      },
    });
    let out = '';
    child.stdout!.on('data', (chunk: Buffer) => (out += chunk.toString()));
    // It waits up to 3 s for its store before it listens: the signal comes in that wait.
    await vi.waitFor(() => expect(out).toMatch(/"redis unreachable/), { timeout: 15_000 });
    expect(out).not.toContain('Sluice listening');
    writeFileSync(file, `${NEW_KEY}\n`);
    child.kill('SIGHUP');
    await vi.waitFor(() => expect(out).toMatch(/"reloaded API keys"/), { timeout: 15_000 });
    expect(out).toContain('Sluice listening');
    expect(child.exitCode).toBeNull();
    child.kill('SIGKILL');
  });

  it("a SIGHUP while the compiled server's packages load (before any line of the server runs) does not end it either", async () => {
    // The last review's finding: `npm start`'s bundle loaded every package before its first line
    // (hangups.ts) ran, half a second in which SIGHUP still ended the process.
    // Inside the repository, so that the bundle finds its packages (a fresh clone has no dist/ yet).
    mkdirSync(join(REPO_ROOT, 'dist'), { recursive: true });
    const outdir = mkdtempSync(join(REPO_ROOT, 'dist', 'test-sighup-'));
    try {
      const entry = await buildServer(join(outdir, 'server'));
      const file = keysFile(OLD_KEY);
      const go = join(outdir, 'go');
      const child = spawnNode(['--import', 'tsx', '--import', './test/helpers/hold-packages.ts', entry], {
        env: {
          ...process.env,
          PORT: '0',
          LOG_LEVEL: 'info',
          API_KEYS_FILE: file,
          HOLD_PACKAGES_UNTIL: go,
          DATA_DIR: mkdtempSync(join(tmpdir(), 'sluice-data-')),
        },
      });
      let out = '';
      let err = '';
      child.stdout!.on('data', (chunk: Buffer) => (out += chunk.toString()));
      child.stderr!.on('data', (chunk: Buffer) => (err += chunk.toString()));
      await vi.waitFor(() => expect(err).toContain('holding packages'), { timeout: 15_000 });
      writeFileSync(file, `${NEW_KEY}\n`);
      child.kill('SIGHUP');
      // The signal is handled (or not) at once; the packages are let go after.
      const ended = once(child, 'exit');
      await vi.waitFor(() => {
        expect(child.signalCode, 'the process ended').toBeNull();
        expect(readFileSync(`/proc/${child.pid}/status`, 'utf8')).toMatch(/^SigPnd:\s+0+$/m);
      });
      writeFileSync(go, '');
      await Promise.race([
        vi.waitFor(() => expect(out).toMatch(/"reloaded API keys"/), { timeout: 15_000 }),
        ended.then(([code, signal]) => expect.fail(`the process ended (${String(code)}, ${String(signal)})`)),
      ]);
      expect(out).toContain('Sluice listening');
      child.kill('SIGKILL');
    } finally {
      rmSync(outdir, { recursive: true, force: true });
    }
  });

  it('with WORKERS, the primary hands SIGHUP to every worker', async () => {
    const redis = await startRedis();
    if (!redis) return;
    const file = keysFile(OLD_KEY);
    const sluice = await startSluiceProcess({ API_KEYS_FILE: file, REDIS_URL: redis.url, WORKERS: 2, SIM_DELAY_MS: 0 });
    running.push(sluice);
    await vi.waitFor(() => expect(sluice.output()).toContain('"workers":2'), { timeout: 20_000 });
    writeFileSync(file, `${NEW_KEY}\n`);
    sluice.child.kill('SIGHUP');
    const reloaded = () => new Set([...sluice.output().matchAll(/"pid":(\d+)[^\n]*"reloaded API keys"/g)].map((m) => m[1]));
    await vi.waitFor(() => expect(reloaded().size).toBe(2), { timeout: 10_000 });
    // Each new connection goes to a worker in turn: both have the new keys.
    for (let i = 0; i < 4; i++) {
      expect(await statusWith(sluice.url, NEW_KEY)).toBe(200);
      expect(await statusWith(sluice.url, OLD_KEY)).toBe(401);
    }
    expect(await sluice.stop('SIGTERM')).toBe(0);
  });

  it('with WORKERS, a SIGHUP while the workers start (their store not reachable yet) reaches each once it serves', async () => {
    // The second review: the primary handed the signal only to workers that served, and one still
    // starting had read the file already: it kept the old keys.
    const file = keysFile(OLD_KEY);
    const child = spawnNode(['--import', 'tsx', 'server/main.ts'], {
      env: { ...process.env, PORT: '0', LOG_LEVEL: 'info', API_KEYS_FILE: file, REDIS_URL: 'redis://127.0.0.1:1', WORKERS: '2' },
    });
    let out = '';
    child.stdout!.on('data', (chunk: Buffer) => (out += chunk.toString()));
    try {
      const unreachable = () => new Set([...out.matchAll(/"pid":(\d+)[^\n]*"redis unreachable"/g)].map((m) => m[1]));
      await vi.waitFor(() => expect(unreachable().size).toBe(2), { timeout: 20_000 });
      expect(out).not.toContain('"workers":2');
      writeFileSync(file, `${NEW_KEY}\n`);
      child.kill('SIGHUP');
      await vi.waitFor(() => expect(out).toContain('"workers":2'), { timeout: 20_000 });
      const reloaded = () => new Set([...out.matchAll(/"pid":(\d+)[^\n]*"reloaded API keys"/g)].map((m) => m[1]));
      await vi.waitFor(() => expect(reloaded()).toEqual(unreachable()), { timeout: 10_000 });
    } finally {
      // The primary stops its workers on SIGTERM.
      const exited = once(child, 'exit');
      child.kill('SIGTERM');
      await exited;
    }
  });
});
