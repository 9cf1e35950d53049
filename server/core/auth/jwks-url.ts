/**
 * Why a URL cannot be a JWKS's, if it cannot. Keys must come over TLS, except from this machine (a
 * local identity provider, tests); a user name or password would be refused by fetch at the first
 * token. The answer never holds the URL: it may hold a password, and ends up in logs.
 */
export function jwksUrlProblem(url: URL): string | undefined {
  const local = url.hostname === 'localhost' || url.hostname === '[::1]' || /^127\.\d+\.\d+\.\d+$/.test(url.hostname);
  if (url.protocol !== 'https:' && !(url.protocol === 'http:' && local)) return 'must be https:// (http:// only for localhost)';
  if (url.username !== '' || url.password !== '') return 'must not hold a user name or password (the JWKS is fetched without them)';
  return undefined;
}
