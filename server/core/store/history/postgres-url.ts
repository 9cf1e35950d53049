import { SluiceError } from '../../errors.ts';

/** Where DATABASE_URL leads, as postgres.js takes it. */
export interface PostgresTarget {
  /** The URL for postgres.js, less what `options` says instead. */
  readonly url: string;
  /** A host (or a socket's directory) and port given other than in the URL's authority. */
  readonly options: { readonly host?: string; readonly port?: number };
  /** Where, without the credentials, for messages and logs. */
  readonly where: string;
}

const URI = /^(postgres(?:ql)?):\/\/(?:([^@/?#]*)@)?([^/?#]*)([^?#]*)(?:\?([^#]*))?(?:#.*)?$/;

/**
 * DATABASE_URL read as libpq reads a connection URI, where postgres.js does not: a `host` (and
 * `port`) parameter overrides the authority's (`?host=/var/run/postgresql`: a Unix socket), and a
 * percent-encoded host that starts with `/` is a socket's directory. postgres.js would send the
 * parameters to the server as settings, which refuses them, and take the encoded directory for a
 * host name. Several hosts (`h1:5432,h2:5432`, with `target_session_attrs`) it reads itself.
 */
export function postgresTarget(raw: string): PostgresTarget {
  const match = URI.exec(raw);
  if (!match) {
    const scheme = /^([a-z][a-z0-9+.-]*):/i.exec(raw)?.[1];
    throw new SluiceError(
      'internal',
      scheme && !/^postgres(ql)?$/i.test(scheme)
        ? `DATABASE_URL must start with postgres:// or postgresql://, got ${scheme}://`
        : 'DATABASE_URL is not a valid URL',
    );
  }
  const [, scheme, userinfo, authority = '', path = '', query = ''] = match;
  const params = new URLSearchParams(query);
  let host = params.get('host') ?? undefined;
  let port = params.get('port') ?? undefined;
  params.delete('host');
  params.delete('port');
  let hosts = authority;
  const decoded = safeDecode(authority);
  if (decoded.startsWith('/')) {
    // `%2Fvar%2Frun%2Fpostgresql:5432`: the directory, then maybe a port.
    const at = /:(\d+)$/.exec(decoded);
    host ??= at ? decoded.slice(0, at.index) : decoded;
    port ??= at?.[1];
    hosts = 'localhost';
  }
  if (port !== undefined && !/^\d{1,5}$/.test(port)) throw new SluiceError('internal', `DATABASE_URL: port must be a number, got ${port}`);
  const rest = params.size > 0 ? `?${params}` : '';
  const url = `${scheme}://${userinfo === undefined ? '' : `${userinfo}@`}${hosts}${path}${rest}`;
  // The first host stands for the URL's validity (postgres.js reads the others itself).
  const first = hosts.split(',')[0]!;
  let parsed: URL;
  try {
    parsed = new URL(`${scheme}://${first}${path}`);
  } catch {
    throw new SluiceError('internal', 'DATABASE_URL is not a valid URL');
  }
  const where =
    host !== undefined
      ? `${host}:${port ?? (parsed.port || 5432)}${parsed.pathname}`
      : `${hosts.includes(',') ? hosts : `${parsed.hostname}:${parsed.port || 5432}`}${parsed.pathname}`;
  return { url, options: { ...(host === undefined ? {} : { host }), ...(port === undefined ? {} : { port: Number(port) }) }, where };
}

function safeDecode(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}
