// The documented route's JSON has the layout of Python's json.dumps (the reference implementation):
// `": "` and `", "` separators and ensure_ascii escaping. Only what the route writes is covered:
// strings, integers and booleans.

const PLAIN = /^[\x20-\x21\x23-\x5b\x5d-\x7e]*$/;
// JSON.stringify escapes quotes, backslashes and controls; Python also escapes DEL and non-ASCII.
const NON_ASCII = /[\x7f-\uffff]/g;
const toUnicodeEscape = (c: string): string => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`;

/** A string as Python's `json.dumps` writes it (ensure_ascii=True). */
export function pyJsonString(value: string): string {
  if (PLAIN.test(value)) return `"${value}"`;
  return JSON.stringify(value).replace(NON_ASCII, toUnicodeEscape);
}
