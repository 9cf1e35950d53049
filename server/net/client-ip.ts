import { BlockList, isIP } from 'node:net';

/**
 * The proxies whose `X-Forwarded-For` Sluice believes (TRUSTED_PROXIES): addresses and CIDR blocks,
 * IPv4 and IPv6. IPv4-mapped IPv6 peers (`::ffff:127.0.0.1`, as Node reports them on a dual-stack
 * socket) match the IPv4 entries.
 */
export interface TrustedProxies {
  /** Whether `address` (an IP, as a socket or a forwarded header gives it) is one of them. */
  has(address: string): boolean;
  /** True when nothing is trusted (the default): the socket's peer is the client. */
  readonly none: boolean;
}

const LOOPBACK = ['127.0.0.0/8', '::1/128'];

/**
 * Parses TRUSTED_PROXIES: comma-separated IPs or CIDRs (`10.0.0.5`, `10.0.0.0/8`, `fd00::/8`), or the
 * word `loopback` (127.0.0.0/8 and ::1). Empty or unset: none. Throws a RangeError naming a bad entry.
 */
export function parseTrustedProxies(text: string | undefined): TrustedProxies {
  const list = new BlockList();
  let count = 0;
  const entries = (text ?? '')
    .split(',')
    .map((e) => e.trim())
    .filter((e) => e !== '');
  for (const entry of entries.flatMap((e) => (e.toLowerCase() === 'loopback' ? LOOPBACK : [e]))) {
    const slash = entry.indexOf('/');
    const address = slash === -1 ? entry : entry.slice(0, slash);
    const version = isIP(address);
    if (version === 0) throw new RangeError(`"${entry}" is not an IP address or CIDR block`);
    const type = version === 4 ? 'ipv4' : 'ipv6';
    if (slash === -1) list.addAddress(address, type);
    else {
      const bitsText = entry.slice(slash + 1);
      const bits = Number(bitsText);
      if (!/^\d{1,3}$/.test(bitsText) || bits > (version === 4 ? 32 : 128)) {
        throw new RangeError(`"${entry}" has a bad prefix length (0-${version === 4 ? 32 : 128})`);
      }
      list.addSubnet(address, bits, type);
    }
    count++;
  }
  return {
    none: count === 0,
    has: (address) => {
      const version = isIP(address);
      return version !== 0 && count > 0 && list.check(address, version === 4 ? 'ipv4' : 'ipv6');
    },
  };
}

/** `1.2.3.4`, `1.2.3.4:5678`, `::1`, `[::1]:80` → the bare address; anything else → undefined. */
function bareAddress(text: string): string | undefined {
  const t = text.trim();
  if (isIP(t)) return t;
  const bracketed = /^\[([^\]]+)\](?::\d+)?$/.exec(t);
  if (bracketed && isIP(bracketed[1]!) === 6) return bracketed[1];
  const v4port = /^(\d{1,3}(?:\.\d{1,3}){3}):\d+$/.exec(t);
  if (v4port && isIP(v4port[1]!) === 4) return v4port[1];
  return undefined;
}

/**
 * The client's address. The socket's peer is the client unless it is a trusted proxy; then the
 * `X-Forwarded-For` chain is read from the right (the entry that proxy added) and the first
 * address that is not itself a trusted proxy is the client. Entries a client wrote itself sit
 * further left and are never reached past an untrusted hop, so they cannot be spoofed in. An
 * unreadable entry stops the walk at the last trusted hop that passed it on.
 */
export function clientIp(peer: string | undefined, forwardedFor: string | readonly string[] | undefined, trusted: TrustedProxies): string | undefined {
  if (peer === undefined || trusted.none || !trusted.has(peer) || forwardedFor === undefined) return peer;
  const chain = (typeof forwardedFor === 'string' ? [forwardedFor] : forwardedFor).join(',').split(',');
  let current = peer;
  for (let i = chain.length - 1; i >= 0; i--) {
    if (chain[i]!.trim() === '') continue;
    const hop = bareAddress(chain[i]!);
    if (hop === undefined) return current;
    current = hop;
    if (!trusted.has(hop)) return hop;
  }
  return current;
}
