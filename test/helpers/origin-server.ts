import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach } from 'vitest';

export interface OriginFile {
  readonly body: string;
  readonly type: string;
}

export interface OriginServer {
  /** `http://localhost:<port>`: another site than Sluice's `http://127.0.0.1:<port>` for a browser, on the same machine. */
  readonly origin: string;
  close(): Promise<void>;
}

const open = new Set<Server>();
afterEach(async () => {
  const servers = [...open];
  open.clear();
  for (const server of servers) {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  }
});

/**
 * A website of its own, for browser tests of cross-origin rules: a plain HTTP server serving the
 * given files (404 for anything else). Reached through `localhost` while Sluice is reached through
 * `127.0.0.1`, so the browser sees two sites, both on loopback (no private-network rules apply).
 * Closed after the test.
 */
export async function serveOrigin(files: Readonly<Record<string, OriginFile>>): Promise<OriginServer> {
  const server = createServer((req, res) => {
    const file = files[(req.url ?? '/').split('?', 1)[0]!];
    if (!file) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { 'Content-Type': file.type, 'Cache-Control': 'no-store' }).end(file.body);
  });
  open.add(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    origin: `http://localhost:${port}`,
    close: async () => {
      open.delete(server);
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

export const BLANK_PAGE: OriginFile = { body: '<!doctype html><html><head><title>another site</title></head><body></body></html>', type: 'text/html' };
