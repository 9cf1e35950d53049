// A base URL's user and password (`https://user:password@host/v1`: a proxy in front of the
// upstream), sent as Basic auth. One place builds the header, so that the logs' redaction knows
// every form the password takes on the wire.

/** The URL's user and password as written, each decoded where it holds escapes (`%40` for `@`). */
function decoded(part: string): string {
  try {
    return decodeURIComponent(part);
  } catch {
    // A `%` that starts no escape (a password such as `50%off`): as written.
    return part;
  }
}

/** `Basic <base64 of user:password>` for a URL that carries them, undefined for one that does not. */
export function basicAuthorization(url: URL): string | undefined {
  if (!url.username && !url.password) return undefined;
  return `Basic ${Buffer.from(`${decoded(url.username)}:${decoded(url.password)}`, 'utf8').toString('base64')}`;
}
