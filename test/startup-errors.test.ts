import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { REPO_ROOT } from './helpers/children.ts';

const cleanups: Array<() => void> = [];
afterEach(() => {
  for (const cleanup of cleanups.splice(0)) cleanup();
});

/** Starts `server/main.ts` as an operator would, and resolves with its exit code and what it printed to stderr. */
async function start(env: Record<string, string>): Promise<{ code: number | null; stderr: string }> {
  const dataDir = mkdtempSync(join(tmpdir(), 'sluice-startup-'));
  cleanups.push(() => rmSync(dataDir, { recursive: true, force: true }));
  const child = spawn(process.execPath, ['--import', 'tsx', 'server/main.ts'], {
    cwd: REPO_ROOT,
    env: { ...process.env, PORT: '0', DATA_DIR: dataDir, LOG_LEVEL: 'warn', ...env },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const [code] = (await once(child, 'exit')) as [number | null];
  return { code, stderr };
}

/** One line that says what is wrong: no stack trace for an operator to read through. */
function expectOneLine(stderr: string, pattern: RegExp): void {
  expect(stderr).toMatch(pattern);
  expect(stderr).not.toMatch(/^\s+at /m);
  expect(stderr.trim().split('\n')).toHaveLength(1);
}

describe('start-up that cannot succeed exits 2 with one line naming the cause', () => {
  it('a port in use', async () => {
    const taken: Server = createServer();
    taken.listen(0, '127.0.0.1');
    await once(taken, 'listening');
    cleanups.push(() => taken.close());
    const port = (taken.address() as { port: number }).port;
    const { code, stderr } = await start({ PORT: String(port), STORE: 'memory' });
    expect(code).toBe(2);
    expectOneLine(stderr, new RegExp(`sluice: cannot listen on 127\\.0\\.0\\.1:${port}: the address is in use \\(EADDRINUSE\\)`));
  });

  it('an API_KEYS_FILE that cannot be read', async () => {
    const { code, stderr } = await start({ API_KEYS_FILE: '/nonexistent/keys', STORE: 'memory' });
    expect(code).toBe(2);
    expectOneLine(stderr, /sluice: API_KEYS_FILE: cannot read \/nonexistent\/keys \(ENOENT/);
  });

  it('a history database that is not one', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'sluice-notdb-'));
    cleanups.push(() => rmSync(dataDir, { recursive: true, force: true }));
    writeFileSync(join(dataDir, 'history.db'), 'this is not a database, it is a text file '.repeat(200));
    const { code, stderr } = await start({ DATA_DIR: dataDir });
    expect(code).toBe(2);
    expectOneLine(stderr, /sluice: Cannot open the history database at .*history\.db: file is not a database/);
  });

  it('a JWKS URL that cannot be used is named without the password it holds', async () => {
    for (const url of ['ftp://user:s3cret-jwks-pass@id.example.com/jwks', 'http://user:s3cret-jwks-pass@id.example.com/jwks']) {
      const { code, stderr } = await start({ AUTH_JWKS_URL: url, STORE: 'memory' });
      expect(code).toBe(2);
      expectOneLine(stderr, /AUTH_JWKS_URL: must be https:\/\/ \(http:\/\/ only for localhost\)/);
      expect(stderr).not.toContain('s3cret-jwks-pass');
    }
    // Credentials in the URL are refused as such (a fetch would refuse them at the first token).
    const { code, stderr } = await start({ AUTH_JWKS_URL: 'https://user:s3cret-jwks-pass@id.example.com/jwks', STORE: 'memory' });
    expect(code).toBe(2);
    expectOneLine(stderr, /AUTH_JWKS_URL: must not hold a user name or password/);
    expect(stderr).not.toContain('s3cret-jwks-pass');
  });
});
