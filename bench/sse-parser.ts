// An incremental SSE parser for the load generator: fed text chunks as they arrive, it calls back
// once per event with its `event` and `data` fields. Lines may end with `\r\n`, `\n` or `\r`, as the
// SSE standard allows; comment lines are skipped.

export interface SseEvent {
  readonly event: string;
  readonly data: string;
  readonly id: string | undefined;
}

export class SseParser {
  readonly #onEvent: (event: SseEvent) => void;
  #buffer = '';
  #event = '';
  #data: string[] = [];
  #id: string | undefined;

  constructor(onEvent: (event: SseEvent) => void) {
    this.#onEvent = onEvent;
  }

  push(chunk: string): void {
    const text = this.#buffer + chunk;
    let start = 0;
    const length = text.length;
    for (let i = 0; i < length; i++) {
      const c = text.charCodeAt(i);
      if (c !== 10 && c !== 13) continue;
      // A `\r` at the end of the text may be the first half of `\r\n`: wait for the next chunk.
      if (c === 13 && i === length - 1) break;
      this.#line(text.slice(start, i));
      if (c === 13 && text.charCodeAt(i + 1) === 10) i++;
      start = i + 1;
    }
    this.#buffer = text.slice(start);
  }

  #line(line: string): void {
    if (line.length === 0) {
      if (this.#data.length > 0) {
        this.#onEvent({ event: this.#event || 'message', data: this.#data.join('\n'), id: this.#id });
      }
      this.#event = '';
      this.#data = [];
      this.#id = undefined;
      return;
    }
    if (line.charCodeAt(0) === 58) return; // ':' comment
    const colon = line.indexOf(':');
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? '' : line.slice(colon + 1);
    if (value.charCodeAt(0) === 32) value = value.slice(1);
    if (field === 'data') this.#data.push(value);
    else if (field === 'event') this.#event = value;
    else if (field === 'id') this.#id = value;
  }
}
