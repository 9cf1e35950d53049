/** A Redis server's address. */
export interface HostPort {
  readonly host: string;
  readonly port: number;
}

/**
 * Which Redis deployment Sluice uses: one server (or a managed endpoint) by URL, a primary found
 * through Sentinels (followed through failovers), or a Cluster found from seed nodes. `tls`: TLS
 * for every connection (a `rediss://` URL asks for it by itself), with `ca` to trust instead of the
 * system's authorities.
 */
export type RedisTopology =
  | { readonly kind: 'single'; readonly url: string; readonly tls?: RedisTls }
  | { readonly kind: 'sentinel'; readonly sentinels: readonly HostPort[]; readonly master: string; readonly tls?: RedisTls }
  | { readonly kind: 'cluster'; readonly nodes: readonly HostPort[]; readonly tls?: RedisTls };

export interface RedisTls {
  /** PEM certificates of the authorities that sign the servers' certificates. */
  readonly ca?: string;
}

/** Bounds a list of seed nodes or Sentinels (an operator lists a handful, not thousands). */
const MAX_ADDRESSES = 64;

/**
 * Parses `host:port,host:port` (IPv6 hosts in brackets: `[::1]:6379`); throws a RangeError that
 * names the entry at fault.
 */
export function parseHostPorts(value: string): HostPort[] {
  const entries = value
    .split(',')
    .map((entry) => entry.trim())
    .filter((entry) => entry.length > 0);
  if (entries.length === 0) throw new RangeError('expected host:port entries separated by commas');
  if (entries.length > MAX_ADDRESSES) throw new RangeError(`at most ${MAX_ADDRESSES} entries, got ${entries.length}`);
  return entries.map((entry) => {
    const match = /^(?:\[([0-9a-fA-F:.]+)\]|([^\s:[\]/]+)):(\d{1,5})$/.exec(entry);
    const port = Number(match?.[3]);
    if (!match || port < 1 || port > 65535) throw new RangeError(`"${entry}" is not host:port`);
    return { host: match[1] ?? match[2]!, port };
  });
}

/** A topology's kind and addresses, without credentials, for logs. */
export function describeTopology(topology: RedisTopology): string {
  const tls = topology.tls ? ', TLS' : '';
  switch (topology.kind) {
    case 'single': {
      const url = URL.canParse(topology.url) ? new URL(topology.url) : undefined;
      return `redis ${url ? `${url.protocol}//${url.host}` : '(url)'}${tls}`;
    }
    case 'sentinel':
      return `redis sentinel master "${topology.master}" via ${topology.sentinels.length} sentinels${tls}`;
    case 'cluster':
      return `redis cluster from ${topology.nodes.length} seed nodes${tls}`;
    default: {
      const unexpected: never = topology;
      throw new Error(`unknown topology ${String(unexpected)}`);
    }
  }
}
