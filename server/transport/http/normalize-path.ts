const UNRESERVED = /^[A-Za-z0-9\-._~]$/;

/**
 * A request path as routes match it: escapes of unreserved characters decoded (`%2E` is `.`), the
 * others upper-cased, `.` and `..` segments resolved, repeated and trailing slashes dropped. Every
 * spelling of a path then reaches the same route, and only that one. Undefined for a malformed
 * escape (no route has such a name).
 */
export function normalizePath(path: string): string | undefined {
  let decoded = path;
  if (path.includes('%')) {
    decoded = '';
    for (let i = 0; i < path.length; i++) {
      const c = path[i]!;
      if (c !== '%') {
        decoded += c;
        continue;
      }
      const hex = path.slice(i + 1, i + 3);
      if (!/^[0-9A-Fa-f]{2}$/.test(hex)) return undefined;
      const char = String.fromCharCode(parseInt(hex, 16));
      decoded += UNRESERVED.test(char) ? char : `%${hex.toUpperCase()}`;
      i += 2;
    }
  }
  if (!/\/\/|\/\.|\/$/.test(decoded) || decoded === '/') return decoded;
  const segments: string[] = [];
  for (const segment of decoded.split('/')) {
    if (segment === '' || segment === '.') continue;
    if (segment === '..') segments.pop();
    else segments.push(segment);
  }
  return `/${segments.join('/')}`;
}
