// What history can keep of a text. SQLite and PostgreSQL store text as UTF-8 that ends at a NUL
// (the SQLite driver cuts the text there, PostgreSQL refuses it), and UTF-8 has no unpaired surrogates (both
// turn one into U+FFFD): such text would come back other than it went in, or not at all.

/** Why a client's text cannot be kept as it is, or undefined when it can. */
export function unstorable(text: string): string | undefined {
  if (text.includes('\u0000')) return 'must not contain the NUL character (U+0000)';
  if (!text.isWellFormed()) return 'must be valid Unicode text (it holds an unpaired surrogate)';
  return undefined;
}

/**
 * A model's text as history keeps it: NULs and unpaired surrogates become U+FFFD. Applied where
 * the text enters, so that the stream shows what history keeps.
 */
export function storable(text: string): string {
  if (!text.includes('\u0000') && text.isWellFormed()) return text;
  return text.toWellFormed().replaceAll('\u0000', '\uFFFD');
}

/** The first `length` characters of `text`, without half of a surrogate pair at the end. */
export function clip(text: string, length: number): string {
  if (text.length <= length) return text;
  const code = text.charCodeAt(length - 1);
  return text.slice(0, code >= 0xd800 && code <= 0xdbff ? length - 1 : length);
}
