import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * Listens on PORT (0: any) at 127.0.0.1 and prints one JSON line with `"url"`, as Sluice's start-up
 * log does, so the bench starts every server the same way. SIGTERM/SIGINT exit cleanly (which lets
 * `--cpu-prof` write its profile).
 */
export async function listenAndAnnounce(server: Server, name: string, onClose?: () => void): Promise<void> {
  const port = Number(process.env.PORT ?? 0);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    // The same accept backlog as Sluice's default LISTEN_BACKLOG, so that held streams, all opened
    // at once, compare the servers' work rather than their backlogs.
    server.listen({ port, host: '127.0.0.1', backlog: 4096 }, () => resolve());
  });
  const { port: bound } = server.address() as AddressInfo;
  const url = `http://127.0.0.1:${bound}`;
  process.stdout.write(`${JSON.stringify({ level: 30, service: name, url, msg: `${name} listening on ${url}` })}\n`);
  const stop = (): void => {
    onClose?.();
    server.closeAllConnections();
    server.close(() => process.exit(0));
    setTimeout(() => process.exit(0), 2000).unref();
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
}
