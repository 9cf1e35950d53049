/**
 * Browser origins (`scheme://host[:port]`), as ALLOWED_ORIGINS lists them and as browsers send them
 * in `Origin`. Kept apart from the HTTP wiring so that the configuration can validate the list.
 */

/** Every origin (`*`), or a set of origins in their normalized form. */
export type AllowedOrigins = '*' | ReadonlySet<string>;

const ORIGIN = /^([a-z][a-z0-9+.-]*):\/\/([^/?#@\s\\]+)$/i;
const DEFAULT_PORTS: Readonly<Record<string, string>> = { http: '80', https: '443' };

/**
 * An origin in its serialized form (lowercase scheme and host, no default port, no trailing slash),
 * or undefined when the text is not one. Non-web schemes (`capacitor://localhost`, an app's
 * webview) are kept as written, lowercased; `null` (sandboxed frames, files) is not an origin.
 */
export function normalizeOrigin(text: string): string | undefined {
  const match = ORIGIN.exec(text.endsWith('/') ? text.slice(0, -1) : text);
  if (!match) return undefined;
  const scheme = match[1]!.toLowerCase();
  let host = match[2]!.toLowerCase();
  if (scheme in DEFAULT_PORTS) {
    try {
      host = new URL(`${scheme}://${host}`).host;
    } catch {
      return undefined;
    }
    if (host.endsWith(`:${DEFAULT_PORTS[scheme]}`)) host = host.slice(0, host.lastIndexOf(':'));
  }
  return `${scheme}://${host}`;
}

/**
 * Parses ALLOWED_ORIGINS: comma-separated origins (`https://app.example.com,http://localhost:5173`),
 * or `*` for any. Empty or unset: none besides the server's own. Throws a RangeError naming a bad entry.
 */
export function parseAllowedOrigins(text: string | undefined): AllowedOrigins {
  const entries = (text ?? '')
    .split(',')
    .map((e) => e.trim())
    .filter((e) => e !== '');
  if (entries.includes('*')) {
    if (entries.length > 1) throw new RangeError('"*" allows every origin: list it alone');
    return '*';
  }
  const origins = new Set<string>();
  for (const entry of entries) {
    const origin = normalizeOrigin(entry);
    if (!origin) throw new RangeError(`"${entry}" is not an origin (scheme://host[:port], without a path)`);
    origins.add(origin);
  }
  return origins;
}
