import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { requireBinary } from './helpers/binaries.ts';
import { startServer } from './helpers/server.ts';

// The accept backlog decides what a burst of connections (a reconnect storm) meets: beyond it the
// kernel drops SYNs and clients wait a second for TCP to retry. `ss` shows a listening socket's
// backlog as its Send-Q.

function backlogOf(port: number): number {
  const line = execFileSync('ss', ['-Hltn', `sport = :${port}`], { encoding: 'utf8' }).trim();
  const sendQ = Number(line.split(/\s+/)[2]);
  expect(Number.isInteger(sendQ), line).toBe(true);
  return sendQ;
}

const somaxconn = Number(readFileSync('/proc/sys/net/core/somaxconn', 'utf8'));

describe('listen backlog', () => {
  it('listens with LISTEN_BACKLOG (default 4096, as far as net.core.somaxconn allows)', async () => {
    if (!requireBinary('ss')) return;
    const byDefault = await startServer();
    expect(backlogOf(byDefault.port)).toBe(Math.min(4096, somaxconn));
    const small = await startServer({ LISTEN_BACKLOG: 100 });
    expect(backlogOf(small.port)).toBe(100);
  });
});
