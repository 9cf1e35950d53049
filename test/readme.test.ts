import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer } from 'node:net';
import { once } from 'node:events';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { simulatedDeltas } from '../server/core/providers/simulated.ts';
import { requireBinary } from './helpers/binaries.ts';

const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8');

/** The fenced block right after a `<!-- name -->` marker in the README. */
function readmeBlock(name: string): string {
  const match = new RegExp(`<!-- ${name} -->\\s*\`\`\`\\w*\\n([\\s\\S]*?)\`\`\``).exec(readme);
  if (!match) throw new Error(`README has no block marked <!-- ${name} -->`);
  return match[1]!;
}

async function freePort(): Promise<number> {
  const server = createServer().listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as { port: number };
  server.close();
  return port;
}

const children: ChildProcess[] = [];
afterEach(async () => {
  for (const child of children.splice(0)) {
    if (child.exitCode === null && child.signalCode === null) {
      const exited = once(child, 'exit');
      process.kill(-child.pid!, 'SIGKILL');
      await exited;
    }
  }
});

describe('README', () => {
  it('its curl example, run against npm start, prints the documented output', async () => {
    const curl = requireBinary('curl');
    if (!curl) return;
    const port = await freePort();
    // `npm start`, as the README says, on a free port instead of 8000.
    const child = spawn('npm', ['start'], {
      // Its embedded store in a directory of its own, not the repository's ./data.
      env: { ...process.env, PORT: String(port), LOG_LEVEL: 'info', DATA_DIR: mkdtempSync(join(tmpdir(), 'sluice-readme-')) },
      stdio: ['ignore', 'pipe', 'pipe'],
      // Its own process group: npm does not pass signals on to the server it starts.
      detached: true,
    });
    children.push(child);
    let out = '';
    await new Promise<void>((resolve, reject) => {
      child.stdout.on('data', (chunk: Buffer) => {
        out += chunk.toString();
        if (out.includes('listening')) resolve();
      });
      child.once('exit', (code) => reject(new Error(`npm start exited with ${code}: ${out}`)));
    });

    const command = readmeBlock('curl-example')
      .trim()
      .replace(/\\\n\s*/g, '')
      .replace('localhost:8000', `localhost:${port}`);
    const printed = await new Promise<string>((resolve, reject) =>
      execFile('bash', ['-c', command], { timeout: 20_000 }, (error, stdout) => (error ? reject(error) : resolve(stdout))),
    );
    const lines = printed.split(/\r?\n/);
    const data = lines.filter((l) => l.startsWith('data: '));
    const words = simulatedDeltas('explain caching');
    expect(data).toEqual([
      ...words.map((w, i) => `data: {"delta": "${w}", "done": false, "chunk_index": ${i + 1}}`),
      'data: {"delta": "", "done": true, "total_chunks": 39}',
    ]);
    // The README shows the start of that output verbatim.
    const shown = readmeBlock('curl-output')
      .split('\n')
      .filter((l) => l.startsWith('event:') || l.startsWith('data:'));
    const printedEventsAndData = lines.filter((l) => l.startsWith('event:') || l.startsWith('data:'));
    expect(shown.length).toBeGreaterThan(4);
    for (const line of shown) expect(printedEventsAndData).toContain(line);
    expect(printed).toMatch(/\r\n/);
    // What ran is the compiled server, and it finds the page's files from dist/ too.
    expect(out).toContain('built dist/server/main.mjs');
    const page = await fetch(`http://127.0.0.1:${port}/`);
    expect([page.status, page.headers.get('content-type')]).toEqual([200, 'text/html; charset=utf-8']);
    expect(await page.text()).toContain('/assets/app.js');
    expect((await fetch(`http://127.0.0.1:${port}/assets/app.js`)).status).toBe(200);

    // SIGTERM to the group, as a terminal's Ctrl-C or a process manager would send: a clean exit.
    const exited = once(child, 'exit');
    process.kill(-child.pid!, 'SIGTERM');
    const [code, signal] = await exited;
    expect(code === 0 || signal === 'SIGTERM').toBe(true);
    // The server itself is gone too: its port refuses connections.
    await vi.waitFor(() => expect(fetch(`http://127.0.0.1:${port}/health`)).rejects.toThrow());
  });
});
