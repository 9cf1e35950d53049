import { once } from 'node:events';
import { connect, createServer, type Socket } from 'node:net';
import { pino } from 'pino';
import postgres from 'postgres';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { PostgresHistory } from '../server/core/store/history/postgres.ts';
import { startPostgres } from './helpers/postgres.ts';
import { startServer } from './helpers/server.ts';
import { drain, streamSseRoute } from './helpers/sse.ts';

// A failover as a managed PostgreSQL does it: the address Sluice connects to (a DNS name, a virtual
// IP, a proxy) now leads to the new primary, and the old one stays up, read-only (a standby, or a
// primary its provider made read-only). Sluice's open connections still lead to the old one, where
// every write is refused: "cannot execute INSERT in a read-only transaction" (SQLSTATE 25006).
// Retrying on those connections can never succeed; a new connection would reach the primary.

/** A TCP forwarder whose target can be moved: open connections stay where they are, new ones go to the new target. */
async function movableAddress(port: number): Promise<{ port: number; moveTo(port: number): void; close(): Promise<void> }> {
  let target = port;
  const sockets = new Set<Socket>();
  const server = createServer((client) => {
    const upstream = connect(target, '127.0.0.1');
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
      s.on('error', () => undefined);
    }
    client.pipe(upstream).pipe(client);
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    port: (server.address() as { port: number }).port,
    moveTo: (p) => (target = p),
    close: async () => {
      for (const s of sockets) s.destroy();
      server.close();
      await once(server, 'close');
    },
  };
}

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

const turn = (url: string, session: string): Promise<Response> =>
  fetch(`${url}/v1/chat/stream`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ message: 'hi', session_id: session }),
  });

describe('PostgreSQL: a failover that leaves the old primary up and read-only', () => {
  it('turns go through again once the address leads to the new primary: a connection refused writes as read-only is not kept', async () => {
    const [oldPrimary, newPrimary] = await Promise.all([startPostgres(), startPostgres()]);
    if (!oldPrimary || !newPrimary) return;
    const oldUrl = new URL(await oldPrimary.createDatabase());
    const newUrl = new URL(await newPrimary.createDatabase());
    // The new primary holds the same schema (a replica of the old one would).
    await (await PostgresHistory.open({ url: newUrl.href, logger: pino({ level: 'silent' }) })).close();

    const address = await movableAddress(Number(oldUrl.port));
    cleanups.push(() => address.close());
    const server = await startServer({ DATABASE_URL: `postgres://postgres@127.0.0.1:${address.port}${oldUrl.pathname}` });
    await drain(streamSseRoute(server.url, { message: 'before', session_id: 'before' }));

    // The failover: the old primary is read-only from now on, the address leads to the new one.
    const admin = postgres(oldPrimary.url, { max: 1, onnotice: () => undefined });
    cleanups.push(() => admin.end({ timeout: 1 }));
    await admin.unsafe('ALTER SYSTEM SET default_transaction_read_only = on');
    await admin`SELECT pg_reload_conf()`;
    address.moveTo(Number(newUrl.port));

    // The first turns may fail (503, retryable), or land on the old primary before its backends
    // take the reload; within a bound, one must be stored on the new primary.
    const check = postgres(newUrl.href, { max: 1, onnotice: () => undefined });
    cleanups.push(() => check.end({ timeout: 1 }));
    let tries = 0;
    let last = '';
    await vi.waitFor(
      async () => {
        const session = `after-${++tries}`;
        const response = await turn(server.url, session);
        last = `${response.status} ${(await response.text()).slice(0, 200)}`;
        expect(response.status, `after ${tries} tries, the last answered: ${last}`).toBe(200);
        const [row] = await check<Array<{ n: number }>>`SELECT count(*)::int AS n FROM history_messages WHERE session_key LIKE ${`%/${session}`}`;
        expect(row!.n, `after ${tries} tries, the turn answered 200 is not on the new primary`).toBe(2);
      },
      { timeout: 20_000, interval: 500 },
    );
  }, 60_000);
});
