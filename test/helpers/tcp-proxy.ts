import { once } from 'node:events';
import { createServer, connect, type Socket } from 'node:net';
import { afterEach } from 'vitest';

export interface TcpProxy {
  readonly url: string;
  /** Cuts every connection through the proxy at once, as a network blip would. */
  dropAll(): void;
  /** From now on, what clients send is held back (the target hears nothing, as over a stalled network) until release(). */
  hold(): void;
  /** As hold(), both ways: neither side hears the other (a path that died silently: no FIN, no RST). */
  freeze(): void;
  /** Resolves once something has been held back. */
  holding(): Promise<void>;
  /** Cuts every connection and refuses new ones (a network partition) until release(). */
  refuse(): void;
  /**
   * The target's next answer that holds `marker` is not passed on: its connection is cut instead
   * (the target did the work, and the client never hears: a commit lost with its connection).
   */
  loseAnswer(marker: string): void;
  /** Sends on what was held back, and stops holding (or refusing). */
  release(): void;
  close(): Promise<void>;
}

const proxies = new Set<TcpProxy>();
afterEach(async () => {
  for (const proxy of [...proxies]) await proxy.close();
});

/** A TCP proxy in front of `targetUrl` (http://host:port), so tests can cut live connections. */
export async function startTcpProxy(targetUrl: string): Promise<TcpProxy> {
  const target = new URL(targetUrl);
  const sockets = new Set<Socket>();
  let held: Array<() => void> | undefined;
  let onHeld: (() => void) | undefined;
  let frozen = false;
  let refusing = false;
  let lose: Buffer | undefined;
  const server = createServer((client) => {
    if (refusing) {
      client.destroy();
      return;
    }
    const upstream = connect(Number(target.port), target.hostname);
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
      s.on('error', () => {
        client.destroy();
        upstream.destroy();
      });
    }
    client.on('data', (chunk: Buffer) => {
      if (!held) {
        upstream.write(chunk);
        return;
      }
      held.push(() => upstream.write(chunk));
      onHeld?.();
    });
    client.on('end', () => upstream.end());
    upstream.on('data', (chunk: Buffer) => {
      if (lose && chunk.includes(lose)) {
        lose = undefined;
        client.destroy();
        upstream.destroy();
        return;
      }
      if (frozen && held) held.push(() => client.write(chunk));
      else client.write(chunk);
    });
    upstream.on('end', () => client.end());
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as { port: number };
  let closed: Promise<void> | undefined;
  const proxy: TcpProxy = {
    url: `http://127.0.0.1:${port}`,
    dropAll: () => {
      for (const s of sockets) s.destroy();
    },
    hold: () => {
      held ??= [];
    },
    freeze: () => {
      held ??= [];
      frozen = true;
    },
    loseAnswer: (marker) => {
      lose = Buffer.from(marker);
    },
    refuse: () => {
      refusing = true;
      proxy.dropAll();
    },
    holding: () =>
      new Promise<void>((resolve) => {
        if (held?.length) resolve();
        else onHeld = resolve;
      }),
    release: () => {
      const writes = held ?? [];
      held = undefined;
      frozen = false;
      refusing = false;
      onHeld = undefined;
      for (const write of writes) write();
    },
    close: () => {
      closed ??= new Promise<void>((resolve) => {
        proxies.delete(proxy);
        proxy.dropAll();
        server.close(() => resolve());
      });
      return closed;
    },
  };
  proxies.add(proxy);
  return proxy;
}
