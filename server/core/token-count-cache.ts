/**
 * Token counts of texts already counted, by their text. A session's stored history is the prompt
 * of each of its turns, so without it a reply's usage estimate tokenizes the whole conversation
 * again every turn (0.03-0.1 µs a character, on the event loop). Only texts of at least `minChars`
 * are kept (shorter ones cost less to count than to remember), at most `maxChars` characters in
 * all, the least recently used dropped first.
 */
export class TokenCountCache {
  readonly #counts = new Map<string, number>();
  readonly #minChars: number;
  readonly #maxChars: number;
  #chars = 0;

  constructor(options: { readonly minChars: number; readonly maxChars: number }) {
    const { minChars, maxChars } = options;
    if (!Number.isInteger(minChars) || minChars < 1) throw new RangeError(`TokenCountCache: minChars must be a positive integer, got ${minChars}`);
    if (!Number.isInteger(maxChars) || maxChars < minChars) throw new RangeError(`TokenCountCache: maxChars must be an integer ≥ minChars, got ${maxChars}`);
    this.#minChars = minChars;
    this.#maxChars = maxChars;
  }

  /** Characters of the texts kept. */
  get size(): number {
    return this.#chars;
  }

  /** Whether the count of `text` is remembered (without making it the most recently used). */
  has(text: string): boolean {
    return this.#counts.has(text);
  }

  /** The count of `text`: remembered, or `count(text)` (then remembered if it is long enough). */
  count(text: string, count: (text: string) => number): number {
    const known = this.#counts.get(text);
    if (known !== undefined) {
      // Most recently used last: a Map iterates in insertion order.
      this.#counts.delete(text);
      this.#counts.set(text, known);
      return known;
    }
    const counted = count(text);
    if (text.length < this.#minChars || text.length > this.#maxChars) return counted;
    this.#counts.set(text, counted);
    this.#chars += text.length;
    for (const [oldest] of this.#counts) {
      if (this.#chars <= this.#maxChars) break;
      this.#counts.delete(oldest);
      this.#chars -= oldest.length;
    }
    return counted;
  }
}
