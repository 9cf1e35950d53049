import { isIP } from 'node:net';
/**
 * The names a server answers to browser pages as (ALLOWED_HOSTS): a page's requests carry its
 * site's name in `Host`, so a page whose DNS name an attacker rebinds to Sluice's address (DNS
 * rebinding) is told apart by that name. Kept apart from the HTTP wiring so that the
 * configuration can validate the list.
 */

/** Any name (`*`), or a set of lowercase hostnames (IPv6 in brackets, as in `Host`). */
export type AllowedHosts = '*' | ReadonlySet<string>;

const HOSTNAME = /^(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*$/;
const IPV6 = /^\[[0-9a-f:.]+\]$/;

/**
 * Parses ALLOWED_HOSTS: comma-separated hostnames (`chat.example.com,localhost`, no port), or `*`.
 * Throws a RangeError naming a bad entry.
 */
export function parseAllowedHosts(text: string): AllowedHosts {
  const entries = text
    .split(',')
    .map((e) => e.trim().toLowerCase())
    .filter((e) => e !== '');
  if (entries.includes('*')) {
    if (entries.length > 1) throw new RangeError('"*" allows every host: list it alone');
    return '*';
  }
  if (entries.length === 0) throw new RangeError('expected hostnames separated by commas, or *');
  for (const entry of entries) {
    if (!HOSTNAME.test(entry) && !IPV6.test(entry)) throw new RangeError(`"${entry}" is not a hostname (no scheme, no port)`);
  }
  return new Set(entries);
}

/** Loopback names, which no DNS answer can take over. */
const LOOPBACK_NAMES: ReadonlySet<string> = new Set(['localhost', '127.0.0.1', '[::1]']);

/**
 * The default for a server listening on `listenHost`: on a loopback address with no proxy in front,
 * only pages reached by a loopback name are its own (a local server, often without keys, is what
 * rebinding attacks aim at); behind a proxy, or on any other interface, the names it is reached by
 * are not known here, so any.
 */
export function defaultAllowedHosts(listenHost: string, behindProxy: boolean): AllowedHosts {
  return isLoopbackHost(listenHost) && !behindProxy ? LOOPBACK_NAMES : '*';
}

/** Whether a listen address (HOST) is a loopback one: only this machine reaches it. */
export function isLoopbackHost(listenHost: string): boolean {
  const host = listenHost.toLowerCase();
  return host === 'localhost' || host === '::1' || /^(?:::ffff:)?127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host);
}

/** The hostname of a `Host` header (lowercase, without its port), or undefined when it is not one. */
export function hostnameOf(hostHeader: string | undefined): string | undefined {
  if (!hostHeader) return undefined;
  const match = /^(\[[0-9a-fA-F:.]+\]|[^:[\]\s/@]+)(?::\d{1,5})?$/.exec(hostHeader.trim());
  return match ? match[1]!.toLowerCase() : undefined;
}

/**
 * Whether a request's `Host` names a host in the list. An address is always one: rebinding needs a
 * name the attacker's DNS answers for (a scraper or a probe that reaches Sluice by its address is
 * not a rebound page); and so is no `Host` at all, which no browser sends.
 */
export function isAllowedHost(allowed: AllowedHosts, hostHeader: string | undefined): boolean {
  if (allowed === '*' || hostHeader === undefined) return true;
  const parsed = hostnameOf(hostHeader);
  if (parsed === undefined) return false;
  // `localhost.` is `localhost`, fully qualified.
  const name = parsed.endsWith('.') ? parsed.slice(0, -1) : parsed;
  if (isIP(name.startsWith('[') ? name.slice(1, -1) : name) !== 0) return true;
  // Browsers resolve `*.localhost` to loopback themselves: `localhost` stands for them too.
  return allowed.has(name) || (name.endsWith('.localhost') && allowed.has('localhost'));
}
