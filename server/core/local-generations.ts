import type { Generation, StopReason } from './generation.ts';
import { within } from '../../shared/within.ts';

/** The sweep of finished generations runs at most this often. */
const MIN_SWEEP_MS = 1000;

/**
 * This instance's generations: the running one of each session, and every one by id (running, or
 * finished and still resumable for `keepMs`), with the promises of their runs.
 */
export class LocalGenerations {
  readonly #keepMs: number;
  readonly #maxKeptChars: number;
  /** Characters of the finished generations kept. */
  #keptChars = 0;
  readonly #byId = new Map<string, Generation>();
  readonly #running = new Map<string, Generation>();
  /** Finished generations in the order they finished, so expiry looks only at the head. */
  readonly #finished: Generation[] = [];
  readonly #runs = new Set<Promise<unknown>>();
  /** Lets the finished ones go on time when nothing else comes (no reply, no resume) to expire them. */
  #sweep: NodeJS.Timeout | undefined;

  constructor(keepMs: number, maxKeptChars = Number.POSITIVE_INFINITY) {
    this.#keepMs = keepMs;
    this.#maxKeptChars = maxKeptChars;
  }

  get runningCount(): number {
    return this.#running.size;
  }

  /** Finished generations kept for resumes. */
  get keptCount(): number {
    return this.#finished.length;
  }

  /** Listeners of the running generations. */
  get listenerCount(): number {
    let n = 0;
    for (const generation of this.#running.values()) n += generation.listenerCount;
    return n;
  }

  get(generationId: string): Generation | undefined {
    return this.#byId.get(generationId);
  }

  runningIn(sessionKey: string): Generation | undefined {
    return this.#running.get(sessionKey);
  }

  /** The ids of the running generations. */
  runningIds(): string[] {
    return [...this.#running.values()].map((generation) => generation.id);
  }

  /** A generation that starts running, and its run (kept until it settles). */
  add(generation: Generation, run: Promise<unknown>): void {
    this.#byId.set(generation.id, generation);
    this.#running.set(generation.sessionKey, generation);
    this.#runs.add(run);
    void run.finally(() => this.#runs.delete(run));
  }

  /** The generation no longer holds its session (it stays resumable). False when it had already left. */
  leaveSession(generation: Generation): boolean {
    if (this.#running.get(generation.sessionKey) !== generation) return false;
    this.#running.delete(generation.sessionKey);
    return true;
  }

  /**
   * The generation's run is over: it is kept for resumes until it expires, or until the finished
   * ones kept hold more than `maxKeptChars` (the oldest go first: a burst of long replies would
   * otherwise hold memory for the whole resume window). One nothing can resume (it belongs to no
   * session) is let go at once.
   */
  finished(generation: Generation, resumable = true): void {
    this.leaveSession(generation);
    if (!resumable) {
      this.#byId.delete(generation.id);
      return;
    }
    this.#finished.push(generation);
    this.#keptChars += generation.keptChars;
    while (this.#keptChars > this.#maxKeptChars && this.#finished.length > 0) this.#forgetOldest();
    this.#armSweep();
  }

  /** One timer, for the oldest kept one's end, and at most one run a second however busy. */
  #armSweep(): void {
    if (this.#sweep || this.#finished.length === 0) return;
    const dueMs = (this.#finished[0]!.finishedAt ?? 0) + this.#keepMs - Date.now();
    this.#sweep = setTimeout(
      () => {
        this.#sweep = undefined;
        this.expire();
        this.#armSweep();
      },
      Math.max(dueMs, MIN_SWEEP_MS),
    );
    this.#sweep.unref();
  }

  /** Forgets finished generations older than the resume window. */
  expire(now = Date.now()): void {
    const cutoff = now - this.#keepMs;
    while (this.#finished.length > 0 && (this.#finished[0]!.finishedAt ?? 0) <= cutoff) this.#forgetOldest();
  }

  #forgetOldest(): void {
    const oldest = this.#finished.shift()!;
    this.#keptChars -= oldest.keptChars;
    this.#byId.delete(oldest.id);
  }

  stopAll(reason: StopReason): void {
    for (const generation of this.#running.values()) generation.stop(reason);
  }

  /** Resolves once every run has settled, or after `timeoutMs`. */
  async settled(timeoutMs = Number.POSITIVE_INFINITY): Promise<void> {
    if (this.#runs.size === 0) return;
    const all = Promise.allSettled([...this.#runs]);
    if (!Number.isFinite(timeoutMs)) {
      await all;
      return;
    }
    await within(all, timeoutMs, () => undefined);
  }

  clear(): void {
    clearTimeout(this.#sweep);
    this.#sweep = undefined;
    this.#byId.clear();
    this.#finished.length = 0;
    this.#keptChars = 0;
  }
}
