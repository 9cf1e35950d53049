// Checks one stream as it arrives: every delta in order (index 1..N, text as the simulator's
// template says), then one terminal `done` naming N. Records time to first event and stream time.

export interface StreamOutcome {
  /** Every delta arrived, in order, with the right text, and `done` named the right total. */
  readonly complete: boolean;
  /** Deltas received. */
  readonly deltas: number;
  /** Milliseconds from the request's start to the first delta (undefined: none arrived). */
  readonly firstEventMs: number | undefined;
  /** Milliseconds from the request's start to the terminal event (or the failure). */
  readonly streamMs: number;
  /** Why the stream failed or was incomplete. */
  readonly error: string | undefined;
}

export class StreamCheck {
  readonly #expected: readonly string[];
  readonly #start: number;
  #next = 1;
  #firstAt: number | undefined;
  #problem: string | undefined;
  #outcome: StreamOutcome | undefined;

  constructor(expected: readonly string[], start = performance.now()) {
    this.#expected = expected;
    this.#start = start;
  }

  get finished(): boolean {
    return this.#outcome !== undefined;
  }

  /** One delta; `index` is the transport's own count when it has one. */
  delta(text: string, index: number = this.#next): void {
    if (this.#outcome) return;
    if (this.#firstAt === undefined) this.#firstAt = performance.now();
    if (this.#problem === undefined) {
      if (index !== this.#next) this.#problem = `delta ${index} arrived where ${this.#next} was expected`;
      else if (text !== this.#expected[index - 1])
        this.#problem = `delta ${index} is ${JSON.stringify(text)}, expected ${JSON.stringify(this.#expected[index - 1])}`;
    }
    this.#next++;
  }

  /** Records a problem the transport's own checks found (the first one is kept). */
  flag(problem: string): void {
    this.#problem ??= problem;
  }

  /** The terminal `done`; `total` is the count it names (undefined when the wire has none). */
  done(total?: number): StreamOutcome {
    const received = this.#next - 1;
    if (this.#problem === undefined) {
      if (received !== this.#expected.length) this.#problem = `${received} deltas, expected ${this.#expected.length}`;
      else if (total !== undefined && total !== received) this.#problem = `done says ${total} chunks, ${received} arrived`;
    }
    return this.#finish(this.#problem === undefined, this.#problem);
  }

  /** The stream failed (transport error, error event, early end, timeout). */
  fail(reason: string): StreamOutcome {
    return this.#finish(false, this.#problem ?? reason);
  }

  #finish(complete: boolean, error: string | undefined): StreamOutcome {
    this.#outcome ??= {
      complete,
      deltas: this.#next - 1,
      firstEventMs: this.#firstAt === undefined ? undefined : this.#firstAt - this.#start,
      streamMs: performance.now() - this.#start,
      error,
    };
    return this.#outcome;
  }
}
