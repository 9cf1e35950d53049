import postgres from 'postgres';
import { describe, expect, it } from 'vitest';
import { SessionHistory } from '../shared/index.ts';
import { startPostgres, type PostgresServer } from './helpers/postgres.ts';
import { startServer } from './helpers/server.ts';
import { postgresTarget } from '../server/core/store/history/postgres-url.ts';
import { streamSseRoute } from './helpers/sse.ts';

// DATABASE_URL is documented (docs/stores.md) as `postgres://...` "with the other libpq URL
// parameters". These are libpq's own forms for what production setups use: a Unix socket (a
// sidecar, a managed service's proxy socket), and several hosts with target_session_attrs (the
// way a client follows a failover to the new primary). Each should reach the database and keep a turn.

/** The server's socket directory and port, as PostgreSQL reports them. */
async function whereIs(pg: PostgresServer): Promise<{ socketDir: string; port: string }> {
  const admin = postgres(pg.url, { max: 1, onnotice: () => undefined });
  try {
    const [row] = await admin<Array<{ dir: string; port: string }>>`SELECT current_setting('unix_socket_directories') AS dir, current_setting('port') AS port`;
    return { socketDir: row!.dir.split(',')[0]!.trim(), port: row!.port };
  } finally {
    await admin.end();
  }
}

async function keepsATurn(databaseUrl: string): Promise<void> {
  const server = await startServer({ DATABASE_URL: databaseUrl });
  for await (const frame of streamSseRoute(server.url, { message: 'hello', session_id: 'url-form' })) void frame;
  const page = SessionHistory.parse(await (await fetch(`${server.url}/v1/sessions/url-form/messages`)).json());
  expect(page.messages.map((m) => [m.role, m.status])).toEqual([
    ['user', 'complete'],
    ['assistant', 'complete'],
  ]);
}

describe('DATABASE_URL in the libpq forms the documentation points to', () => {
  it('a Unix socket given as a percent-encoded host (postgresql://%2Fvar%2Frun%2Fpostgresql/db)', async () => {
    const pg = await startPostgres();
    if (!pg) return;
    const db = new URL(await pg.createDatabase()).pathname;
    const { socketDir, port } = await whereIs(pg);
    // libpq: a host that starts with a slash is a socket directory.
    await keepsATurn(`postgres://postgres@${encodeURIComponent(socketDir)}:${port}${db}`);
  });

  it('a Unix socket given as the host parameter (postgresql://user@localhost/db?host=/var/run/postgresql)', async () => {
    const pg = await startPostgres();
    if (!pg) return;
    const db = new URL(await pg.createDatabase()).pathname;
    const { socketDir, port } = await whereIs(pg);
    // libpq: a query parameter overrides the same part of the URI (here the host and the port);
    // the authority names a port nothing listens on, so that a connection there cannot pass.
    await keepsATurn(`postgres://postgres@localhost:1${db}?host=${socketDir}&port=${port}`);
  });

  it('several hosts, the first one down (postgresql://host1:port1,host2:port2/db?target_session_attrs=read-write)', async () => {
    const pg = await startPostgres();
    if (!pg) return;
    const url = new URL(await pg.createDatabase());
    await keepsATurn(`postgres://postgres@127.0.0.1:1,127.0.0.1:${url.port}${url.pathname}?target_session_attrs=read-write`);
  });
});

describe('postgresTarget', () => {
  it('keeps the other parameters, names where without credentials, and refuses what is not a PostgreSQL URL', () => {
    expect(postgresTarget('postgres://u:s3cret@db.example:6432/chat?sslmode=require&host=/run/pg&port=5433')).toEqual({
      url: 'postgres://u:s3cret@db.example:6432/chat?sslmode=require',
      options: { host: '/run/pg', port: 5433 },
      where: '/run/pg:5433/chat',
    });
    expect(postgresTarget('postgresql://u:p@h1:5432,h2:5433/chat?target_session_attrs=read-write').where).toBe('h1:5432,h2:5433/chat');
    expect(postgresTarget('postgres://u:p@db/chat').where).toBe('db:5432/chat');
    expect(() => postgresTarget('mysql://u:p@db/chat')).toThrow('DATABASE_URL must start with postgres:// or postgresql://, got mysql://');
    expect(() => postgresTarget('postgres://u:p@db/chat?port=x')).toThrow('DATABASE_URL: port must be a number');
  });
});
