import type { ChatMessage, TokenUsage } from '../../shared/messages.ts';
import { formatEventId, type DoneEvent, type ErrorEvent, type FinishReason, type StreamEvent } from '../../shared/stream-events.ts';
import { ERROR_MESSAGES, isAbortError, SluiceError, toSluiceError } from './errors.ts';
import type { Provider, ProviderMessage, ProviderRequest } from './providers/provider.ts';
import type { AppendResult } from './store/event-log.ts';
import type { Settlement } from './store/signals.ts';
import { clip, storable } from './text.ts';
import { estimateUsage } from './usage.ts';
import { isoTime } from './iso-time.ts';

export type Outcome = 'completed' | 'cancelled' | 'interrupted' | 'failed';
/**
 * Why a generation was stopped from outside: a cancel; nobody listening; a shutdown; `lost`: it is
 * no longer this instance's to run (its session lock went to another reply, or another instance
 * ended it as an orphan); `unavailable`: the shared log kept refusing its events; `timed_out`: the
 * reply ran past its time bound (maxReplyMs).
 */
export type StopReason = 'cancelled' | 'no_listeners' | 'shutdown' | 'lost' | 'unavailable' | 'timed_out';

export interface TrackedEvent {
  /** `<generationId>:<seq>`, the id transports send so that a client can resume after it. */
  readonly id: string;
  readonly seq: number;
  readonly event: StreamEvent;
}

export interface GenerationSummary {
  readonly generationId: string;
  readonly outcome: Outcome;
  readonly deltas: number;
  readonly durationMs: number;
  readonly firstDeltaMs: number | undefined;
  /** The time between consecutive deltas, on average and at most (undefined below two deltas). */
  readonly deltaGapMs: { readonly mean: number; readonly max: number } | undefined;
  readonly reply: ChatMessage;
  /** The failure behind `failed`, with its internal cause, for logs. */
  readonly error: SluiceError | undefined;
}

export interface GenerationOptions {
  readonly id: string;
  readonly owner: string;
  readonly sessionId: string;
  readonly sessionKey: string;
  /** How long to keep running after the last listener left (0: stop at once). */
  readonly resumeGraceMs: number;
  /**
   * Copies each event to a shared log. When given, an event reaches listeners only once it is
   * stored there, so a client never sees an event that a resume elsewhere could miss. A copy that
   * fails is tried again; one that keeps failing ends the reply with `unavailable` (no hole).
   */
  readonly onEvent?: (seq: number, event: StreamEvent, deadline?: number) => Promise<AppendResult>;
  /**
   * Asked once the provider is done: `cancelled` when a cancel got there first (the reply then ends
   * as cancelled, so that a cancel that answered true holds), `ended` when another instance ended
   * the reply as an orphan first (it ends as that instance ended it: interrupted).
   */
  readonly settle?: () => Promise<Settlement>;
  /** The most tokens the caller wants in the reply (see ProviderRequest.maxTokens). */
  readonly maxTokens?: number | undefined;
  /**
   * The longest reply kept, in characters: past it the provider is stopped and the reply ends, kept
   * up to there, with finish reason `length` (an upstream that ignores `max_tokens` cannot grow a
   * reply, its history and every later prompt of its session without bound).
   */
  readonly maxReplyChars?: number;
  /**
   * The longest a reply may run, in milliseconds (0: no bound): past it the provider is stopped and
   * the reply fails `upstream_timeout`, keeping what it has. The provider's own limits are between
   * tokens; an upstream that keeps sending chunks without text (keep-alives, a reasoning step, an
   * empty `choices`) would otherwise hold the reply, its session and its slot for ever.
   */
  readonly maxReplyMs?: number;
  /** Asked when the resume window closes; true (someone follows elsewhere) keeps the reply running. */
  readonly keepAlive?: () => Promise<boolean>;
  /**
   * How long a copy to the shared log is tried again while the store fails, before the reply ends
   * as `unavailable` (default 1500 ms; longer where the store fails over to a replica).
   */
  readonly storeWaitMs?: number;
  /** Told how many events the shared log had lost and took again (see #refill). */
  readonly onRefill?: (events: number) => void;
  /** Told when a listener joins (+1) or leaves (-1), for process-wide counts. */
  readonly onListener?: (delta: 1 | -1) => void;
  /**
   * Told the time to the first delta, in milliseconds, when it comes. The gaps between deltas are in
   * the summary: a call per delta cost more than the rest of a delta's path through the core.
   */
  readonly onFirstDelta?: (ms: number) => void;
}

/** A listener reads the event log from a position, then follows its live tail. */
export interface Listener extends AsyncIterableIterator<TrackedEvent> {
  /** Stops listening; the generation's resume window starts if this was the last listener. */
  close(): void;
  /**
   * The next event if it is already there, without waiting (undefined otherwise): lets a transport
   * write everything available in one go.
   */
  poll(): TrackedEvent | undefined;
  /**
   * Calls `wake` once, when poll() may have an event or the listener is over (with the error that
   * ended it, if one did); never before this returns, one waiter at a time. A reply's events come
   * one by one at a model's pace: a promise and an async frame resumed per event cost a held stream
   * more than the rest of its path to the socket, so the drain loop waits through this instead.
   */
  onReady(wake: (error?: unknown) => void): void;
  /** True once nothing more will come: the listener closed, or took the end of the log. */
  readonly over: boolean;
}

export const DONE: IteratorReturnResult<undefined> = Object.freeze({ done: true, value: undefined });
/** Far past any model's longest reply (about 250,000 tokens of English), and a few megabytes at most. */
export const DEFAULT_MAX_REPLY_CHARS = 1_000_000;
/** Longer than a reasoning model's longest thinking and reply, short of holding a session for hours. */
export const DEFAULT_MAX_REPLY_MS = 30 * 60_000;
const replyTimedOut = (): SluiceError => new SluiceError('upstream_timeout', 'The model did not finish its reply within the time allowed');
/** How long one event's copy is tried before the reply ends as `unavailable`, unless told otherwise. */
const STORE_WAIT_MS = 1_500;
/** Waits between tries of a copy: 50, 100, 200, 400 ms, then 500 ms each (the store is soon used again once back). */
const COPY_RETRY_MS = 50;
const COPY_RETRY_MAX_MS = 500;
/** What a finished reply kept for resumes costs beyond its text, in characters (measured: 1.3-1.5 KB of heap). */
const KEPT_REPLY_OVERHEAD_CHARS = 1_000;
/**
 * A copy's deadline is never sooner than this after it starts: one try of it may take as long (a
 * Redis command's own timeout), and a try answered in time must not be refused.
 */
const MIN_COPY_WINDOW_MS = 1_000;
/** How long after a copy's deadline this instance gives up on it: the error of the store's clock as the log knows it. */
const DEADLINE_MARGIN_MS = 250;
/** The wait before try `tries + 1` of a write to the shared store (a copy, a settle). */
const pauseBeforeTry = (tries: number): Promise<void> =>
  new Promise((resolve) => setTimeout(resolve, Math.min(COPY_RETRY_MS << (tries - 1), COPY_RETRY_MAX_MS)));
/** Events sent again at first when the log turns out to have lost some (doubled until enough). */
const REFILL_SPAN = 32;
export const NOTHING_CONSUMED: TokenUsage = Object.freeze({ promptTokens: 0, completionTokens: 0, estimated: true });
const SETTLED_VOID: Promise<void> = Promise.resolve();

/**
 * One assistant reply being produced. It owns the provider call and writes every event into a log
 * numbered from 1; clients never read the provider, they are listeners on the log. When the last
 * listener leaves, a resume window starts; when it closes with nobody back, the provider is aborted.
 */
export class Generation {
  readonly id: string;
  readonly owner: string;
  readonly sessionId: string;
  readonly sessionKey: string;
  readonly #resumeGraceMs: number;
  readonly #storeWaitMs: number;
  /** Events being sent again to a log that lost some (see #refill). */
  #refilling: Promise<boolean> | undefined;
  #onEvent: ((seq: number, event: StreamEvent, deadline?: number) => Promise<AppendResult>) | undefined;
  #settle: (() => Promise<Settlement>) | undefined;
  readonly #maxTokens: number | undefined;
  readonly #maxReplyChars: number;
  readonly #maxReplyMs: number;
  /** Events 1..#visible may be shown to listeners. */
  #visible = 0;
  /** Copies to the shared log that settled ahead of an earlier one (made on the first). */
  #settled: Set<number> | undefined;
  /** Copies under way, and who waits for them all to settle. */
  #copying = 0;
  #copiesSettled: (() => void) | undefined;
  /** After a copy failed for good: the deltas stored before it, the only ones the reply keeps. */
  #broken: number | undefined;
  #keepAlive: (() => Promise<boolean>) | undefined;
  readonly #onRefill: ((events: number) => void) | undefined;
  readonly #onListener: ((delta: 1 | -1) => void) | undefined;
  #onFirstDelta: ((ms: number) => void) | undefined;
  /**
   * The event log: deltas are kept as their text, and their events are built when read, so that a
   * log kept for resuming holds a few strings instead of an object per delta; the terminal event
   * follows them.
   */
  #deltas: string[] = [];
  /** Once the reply is over: the whole text and where each delta ends in it (the log, compacted). */
  #text = '';
  #ends: Uint32Array | undefined;
  #terminal: StreamEvent | undefined;
  readonly #wakers = new Set<{ wake(): void }>();
  /** The provider's abort signal's controller, made when the provider first asks for it (see #signal). */
  #controller: AbortController | undefined;
  #listeners = 0;
  #graceTimer: NodeJS.Timeout | undefined;
  #stopReason: StopReason | undefined;
  /** The outcome is settled: nothing from outside changes it any more. */
  #decided = false;
  #ended = false;
  /** The terminal event is in the log: the reply is over, whoever still listens. */
  #over = false;
  #finishedAt: number | undefined;

  constructor(options: GenerationOptions) {
    for (const name of ['resumeGraceMs', 'storeWaitMs', 'maxReplyMs'] as const) {
      const value = options[name];
      if (value !== undefined && (!Number.isInteger(value) || value < 0))
        throw new RangeError(`generation: ${name} must be a non-negative integer, got ${value}`);
    }
    const maxReplyChars = options.maxReplyChars ?? DEFAULT_MAX_REPLY_CHARS;
    if (!Number.isInteger(maxReplyChars) || maxReplyChars < 1) {
      throw new RangeError(`generation: maxReplyChars must be a positive integer, got ${maxReplyChars}`);
    }
    this.#maxReplyChars = maxReplyChars;
    this.#maxReplyMs = options.maxReplyMs ?? DEFAULT_MAX_REPLY_MS;
    this.id = options.id;
    this.owner = options.owner;
    this.sessionId = options.sessionId;
    this.sessionKey = options.sessionKey;
    this.#resumeGraceMs = options.resumeGraceMs;
    this.#storeWaitMs = options.storeWaitMs ?? STORE_WAIT_MS;
    this.#onEvent = options.onEvent;
    this.#settle = options.settle;
    this.#maxTokens = options.maxTokens;
    this.#keepAlive = options.keepAlive;
    this.#onRefill = options.onRefill;
    this.#onListener = options.onListener;
    this.#onFirstDelta = options.onFirstDelta;
  }

  get ended(): boolean {
    return this.#ended;
  }
  /** Stopped from outside (a cancel, a shutdown, ...), or its outcome settled: it is ending. */
  get stopping(): boolean {
    return this.#stopReason !== undefined || this.#decided;
  }
  get finishedAt(): number | undefined {
    return this.#finishedAt;
  }
  get listenerCount(): number {
    return this.#listeners;
  }
  /**
   * Positions the reply has made so far, shown or still being copied to the shared log: another
   * instance may have shown one of them already, none beyond.
   */
  get madeCount(): number {
    return (this.#ends ? this.#ends.length : this.#deltas.length) + (this.#terminal ? 1 : 0);
  }

  /**
   * What the finished reply kept for resumes costs, in characters: its text, and its bookkeeping
   * (about a kilobyte of objects), so that replies without text are bounded too.
   */
  get keptChars(): number {
    return this.#text.length + KEPT_REPLY_OVERHEAD_CHARS;
  }

  /** The reply's text so far and how many deltas it holds, while it runs (for checkpoints). */
  draft(): { readonly deltas: number; readonly text: string } {
    return { deltas: this.#deltas.length, text: this.#deltas.join('') };
  }

  /**
   * Runs the provider to its end. `persist` stores the reply (whatever its outcome) before the
   * terminal event is published, so a client that sees `done` finds the reply in history.
   */
  async run(provider: Provider, messages: readonly ProviderMessage[], persist: (reply: ChatMessage) => Promise<void>): Promise<GenerationSummary> {
    const generation = this;
    /** Characters the reply may still take. */
    let room = this.#maxReplyChars;
    const request: ProviderRequest = {
      messages,
      ...(this.#maxTokens === undefined ? {} : { maxTokens: this.#maxTokens }),
      get signal() {
        return generation.#signal();
      },
      reportUsage: (u) => (usage = u),
      // A reply cut at maxReplyChars ended for its length, whatever the provider says after.
      reportFinish: (reason) => void (room > 0 && (finishReason = reason)),
    };
    const startedAt = performance.now();
    let firstDeltaMs: number | undefined;
    let firstDeltaAt = 0;
    let lastDeltaAt = 0;
    let maxGapMs = 0;
    let deltas = 0;
    let usage: TokenUsage | undefined;
    let finishReason: FinishReason | undefined;
    let failure: SluiceError | undefined;
    const timeBound = this.#maxReplyMs > 0 ? setTimeout(() => this.stop('timed_out'), this.#maxReplyMs) : undefined;
    try {
      for await (const item of provider.stream(request)) {
        const batch = typeof item === 'string' ? undefined : item;
        const count = batch ? batch.length : 1;
        for (let i = 0; i < count; i++) {
          // Stopped: the provider's signal, if it asked for one, is aborted too.
          if (this.#stopReason || room === 0) break;
          const text = batch ? batch[i]! : (item as string);
          if (text.length === 0) continue;
          let delta = storable(text);
          if (delta.length >= room) {
            // The reply is as long as it may be: what fits is its end (leaving the upstream stops it).
            delta = clip(delta, room);
            room = 0;
            finishReason = 'length';
            if (delta.length === 0) break;
          } else room -= delta.length;
          const now = performance.now();
          if (deltas === 0) {
            firstDeltaAt = now;
            firstDeltaMs = now - startedAt;
            this.#onFirstDelta?.(firstDeltaMs);
          } else if (now - lastDeltaAt > maxGapMs) maxGapMs = now - lastDeltaAt;
          lastDeltaAt = now;
          deltas++;
          this.#appendDelta(delta);
        }
        if (this.#stopReason || room === 0) break;
      }
    } catch (error) {
      if (!this.#stopReason && !isAbortError(error)) failure = toSluiceError(error);
    } finally {
      clearTimeout(timeBound);
    }
    // The reply keeps what reached the shared log (a copy that kept failing cuts it there), and a
    // cancel that got to the shared state before the reply settled decides its outcome.
    await this.#allCopied();
    // A cancel that reached the shared state first wins, whatever else ended the reply (it answered
    // true). A reply stopped by a cancel settles too: the cancel's mark then lasts no longer than a
    // settled one, and a cancel after any ending answers false.
    const settled = this.#settle ? await this.#settleOutcome() : 'settled';
    if (this.#stopReason !== 'cancelled' && settled === 'cancelled') {
      this.#stopReason = 'cancelled';
      failure = undefined;
    } else if (settled === 'ended') {
      // Another instance found this one dead and ended the reply (a stall longer than the liveness
      // mark): what everyone else was shown stands, here too.
      this.#stopReason = 'lost';
      failure = undefined;
    } else if (settled === undefined && !failure) {
      // The shared state cannot say whether a cancel came first (and answered true): the reply
      // does not end as complete, as it does not when its events cannot be stored.
      this.#stopReason ??= 'unavailable';
    }
    this.#decided = true;
    if (this.#broken !== undefined) deltas = this.#deltas.length;

    // One flat string, shared by the stored reply and the kept log (`+=` would keep a rope of every delta).
    const text = this.#deltas.join('');
    let outcome: Outcome;
    let terminal: DoneEvent | ErrorEvent;
    if (failure) {
      outcome = 'failed';
      terminal = { type: 'error', code: failure.code, message: failure.message, partial: text };
      // The retry hint (an upstream's 429) travels with the event to the transports that can carry it.
      if (failure.retryAfterSeconds !== undefined) terminal.retryAfterSeconds = failure.retryAfterSeconds;
    } else if (this.#stopReason === 'unavailable' || this.#stopReason === 'timed_out') {
      outcome = 'failed';
      failure = this.#stopReason === 'unavailable' ? new SluiceError('unavailable', 'The reply could not be stored; it was stopped') : replyTimedOut();
      terminal = { type: 'error', code: failure.code, message: failure.message, partial: text };
    } else if (this.#stopReason) {
      outcome = this.#stopReason === 'cancelled' ? 'cancelled' : 'interrupted';
      const code = outcome === 'cancelled' ? 'cancelled' : 'interrupted';
      terminal = { type: 'error', code, message: ERROR_MESSAGES[code], partial: text };
    } else {
      outcome = 'completed';
      terminal = { type: 'done', totalChunks: deltas };
      if (finishReason) terminal.finishReason = finishReason;
    }
    // Every reply carries its usage, whatever its outcome: the provider's counts, or Sluice's own
    // (decided after the outcome, so that a stop during the count cannot change it). A reply that
    // failed before its first token was refused or never answered: it consumed nothing.
    if (!usage) {
      usage = failure && deltas === 0 ? NOTHING_CONSUMED : await estimateUsage(provider.preamble ? [...provider.preamble, ...messages] : messages, text);
      // An estimate never says the model wrote more than the caller let it (a limit counts the
      // model's own tokens, which the estimate's tokenizer only approximates).
      const cap = this.#maxTokens;
      if (usage && cap !== undefined && usage.completionTokens > cap) usage = { ...usage, completionTokens: cap };
    }
    if (usage) terminal.usage = usage;

    const reply: ChatMessage = {
      role: 'assistant',
      content: text,
      status: outcome === 'completed' ? 'complete' : outcome === 'failed' ? 'failed' : 'interrupted',
      createdAt: isoTime(),
      ...(usage ? { usage } : {}),
    };
    try {
      await persist(reply);
    } catch (error) {
      failure = toSluiceError(error);
      if (outcome === 'completed') {
        outcome = 'failed';
        // Sluice's own errors say what became of the reply (stored later, say); anything else is not the client's to read.
        const message = error instanceof SluiceError && error.code !== 'internal' ? error.message : 'The reply could not be saved';
        terminal = { type: 'error', code: failure.code, message, partial: text, ...(usage ? { usage } : {}) };
      }
    }
    this.#over = true;
    this.#appendTerminal(terminal);
    this.#compact(text);
    await this.#allCopied();
    this.#end();
    return {
      generationId: this.id,
      outcome,
      deltas,
      durationMs: performance.now() - startedAt,
      firstDeltaMs,
      deltaGapMs: deltas > 1 ? { mean: (lastDeltaAt - firstDeltaAt) / (deltas - 1), max: maxGapMs } : undefined,
      reply,
      error: failure,
    };
  }

  /**
   * Stops the provider now. False when the generation had already ended, been stopped, or settled
   * its outcome (a cancel then comes too late: the reply completes).
   */
  stop(reason: StopReason): boolean {
    if (this.#ended || this.#stopReason || this.#decided) return false;
    this.#stopReason = reason;
    this.#clearGrace();
    this.#controller?.abort(Generation.#abortReason(reason));
    return true;
  }

  static #abortReason(reason: StopReason): SluiceError {
    if (reason === 'timed_out') return replyTimedOut();
    return new SluiceError(reason === 'cancelled' ? 'cancelled' : 'interrupted');
  }

  /**
   * The provider's abort signal, made on first use. Making an AbortSignal costs Node 20 about 8 µs
   * (an EventTarget with two Maps, then a prototype change): 5-8% of the SSE route's CPU per event
   * in the bench's throughput scenario. A provider that never waits (the simulator without delay)
   * does not need one: it stops when the generation stops pulling.
   */
  #signal(): AbortSignal {
    if (!this.#controller) {
      this.#controller = new AbortController();
      if (this.#stopReason) this.#controller.abort(Generation.#abortReason(this.#stopReason));
    }
    return this.#controller.signal;
  }

  /**
   * A new listener that gets the events after `afterSeq`, then the live tail; it ends after the
   * terminal event or when `signal` aborts. It counts as a listener from this call on. With
   * `announce`, a `start` event naming the reply comes first (see StartEvent).
   */
  listen(afterSeq: number, signal?: AbortSignal, announce = false): Listener {
    if (!Number.isInteger(afterSeq) || afterSeq < 0) throw new RangeError(`listen: bad position ${afterSeq}`);
    return new Generation.#Listener(this, afterSeq, signal, announce);
  }

  /**
   * A listener of this generation's log. A class nested here (it reads the log's private state)
   * rather than a set of closures: a listener is kept for a whole stream, and its seven closures
   * and their context cost a held stream about 0.5 KB and every reply their allocation.
   */
  static readonly #Listener = class GenerationListener implements Listener {
    readonly #generation: Generation;
    #pos: number;
    #closed = false;
    #pending: ((result: IteratorResult<TrackedEvent>) => void) | undefined;
    #ready: (() => void) | undefined;
    /** With `announce`, the listener starts with the reply's `start` event (position 0, not in the log). */
    #start: IteratorResult<TrackedEvent> | undefined;
    readonly #signal: AbortSignal | undefined;

    constructor(generation: Generation, afterSeq: number, signal: AbortSignal | undefined, announce: boolean) {
      this.#generation = generation;
      this.#pos = afterSeq;
      this.#signal = signal;
      this.#start = announce
        ? { done: false, value: { id: formatEventId(generation.id, 0), seq: 0, event: { type: 'start', replyId: generation.id } } }
        : undefined;
      generation.#listenerJoined();
      // Registered for the listener's whole life (not per wait): a set that grows and shrinks on
      // every event reallocates its table every time.
      generation.#wakers.add(this);
      signal?.addEventListener('abort', this, { once: true });
      if (signal?.aborted) this.close();
    }

    #take(): IteratorResult<TrackedEvent> | undefined {
      if (this.#closed) return DONE;
      const start = this.#start;
      if (start) {
        this.#start = undefined;
        return start;
      }
      const generation = this.#generation;
      if (this.#pos < generation.#visible) {
        const event = generation.#eventAt(this.#pos++);
        return { done: false, value: { id: formatEventId(generation.id, this.#pos), seq: this.#pos, event } };
      }
      if (generation.#ended) {
        this.close();
        return DONE;
      }
      return undefined;
    }

    /** New events are visible (or the log ended): a pending `next()` gets the first of them. */
    wake(): void {
      const ready = this.#ready;
      if (ready) {
        if (!this.#hasNews()) return;
        this.#ready = undefined;
        ready();
        return;
      }
      const resolve = this.#pending;
      if (!resolve) return;
      const result = this.#take();
      // #take() may have closed the listener, which already settled `pending` with DONE.
      if (!result || this.#pending !== resolve) return;
      this.#pending = undefined;
      resolve(result);
    }

    /** The signal's 'abort' (the listener is its own event handler: no closure for it). */
    handleEvent(): void {
      this.close();
    }

    close(): void {
      if (this.#closed) return;
      this.#closed = true;
      this.#signal?.removeEventListener('abort', this);
      this.#generation.#wakers.delete(this);
      const resolve = this.#pending;
      this.#pending = undefined;
      resolve?.(DONE);
      this.#generation.#listenerLeft();
      const ready = this.#ready;
      this.#ready = undefined;
      ready?.();
    }

    onReady(wake: () => void): void {
      if (this.#ready || this.#pending) throw new Error('listener: one waiter at a time');
      // Something to take already (or nothing more ever): woken all the same, but not before this returns.
      if (this.#hasNews()) queueMicrotask(wake);
      else this.#ready = wake;
    }

    /** Something to take (an event, or the end), or the listener closed. */
    #hasNews(): boolean {
      const generation = this.#generation;
      return this.#closed || this.#start !== undefined || this.#pos < generation.#visible || generation.#ended;
    }

    get over(): boolean {
      return this.#closed;
    }

    next(): Promise<IteratorResult<TrackedEvent>> {
      const result = this.#take();
      if (result) return Promise.resolve(result);
      return new Promise((resolve) => {
        this.#pending = resolve;
      });
    }

    return(): Promise<IteratorResult<TrackedEvent>> {
      this.close();
      return Promise.resolve(DONE);
    }

    poll(): TrackedEvent | undefined {
      const result = this.#take();
      return result && !result.done ? result.value : undefined;
    }

    [Symbol.asyncIterator](): this {
      return this;
    }
  };

  /** The event at a 0-based position of the log. */
  #eventAt(i: number): StreamEvent {
    const ends = this.#ends;
    if (ends) return i < ends.length ? { type: 'delta', delta: this.#text.slice(i === 0 ? 0 : ends[i - 1], ends[i]), index: i + 1 } : this.#terminal!;
    return i < this.#deltas.length ? { type: 'delta', delta: this.#deltas[i]!, index: i + 1 } : this.#terminal!;
  }

  /** A finished log stays resumable for minutes: keep it as one string and offsets, not a string per delta. */
  #compact(text: string): void {
    const ends = new Uint32Array(this.#deltas.length);
    let at = 0;
    for (let i = 0; i < ends.length; i++) ends[i] = at += this.#deltas[i]!.length;
    this.#text = text;
    this.#ends = ends;
    this.#deltas = [];
  }

  #appendDelta(delta: string): void {
    // After a copy failed for good, nothing more joins the reply.
    if (this.#broken !== undefined) return;
    const seq = this.#deltas.push(delta);
    if (this.#onEvent) this.#copyThenShow(seq, { type: 'delta', delta, index: seq });
    else this.#show(seq);
  }

  #appendTerminal(event: StreamEvent): void {
    this.#terminal = event;
    const seq = this.#deltas.length + 1;
    if (this.#onEvent) this.#copyThenShow(seq, event);
    else this.#show(seq);
  }

  #show(seq: number): void {
    this.#visible = seq;
    // The first event goes out at once (time to first token is what a reader notices). Later ones
    // are handed over once per burst: a provider often yields many tokens in one turn of the event
    // loop, and a listener woken at the end of it writes them all in one go instead of one by one.
    if (seq === 1) this.#wakeAll();
    else if (!this.#wakeQueued) {
      this.#wakeQueued = true;
      process.nextTick(Generation.#wakeQueuedOf, this);
    }
  }

  #wakeQueued = false;
  // Static, with the generation as nextTick's argument: a bound closure per generation would be
  // kept, with the generation, for the whole resume window.
  static #wakeQueuedOf(generation: Generation): void {
    generation.#wakeQueued = false;
    generation.#wakeAll();
  }

  #wakeAll(): void {
    for (const listener of this.#wakers) listener.wake();
  }

  /** Shows event `seq` once the shared store holds its copy. */
  #copyThenShow(seq: number, event: StreamEvent): void {
    this.#copying++;
    void this.#copy(seq, event).then((shown) => {
      if (shown) {
        // Copies usually settle in order (one connection); the set covers any that do not.
        const settled = (this.#settled ??= new Set());
        settled.add(seq);
        let advanced = false;
        while (settled.delete(this.#visible + 1)) {
          this.#visible++;
          advanced = true;
        }
        if (advanced) this.#wakeAll();
      }
      if (--this.#copying === 0) this.#copiesSettled?.();
    });
  }

  /**
   * Copies one event, trying again while the store fails or an earlier event is missing, for up
   * to `storeWaitMs` (at least MIN_COPY_WINDOW_MS), and DEADLINE_MARGIN_MS more. True when the event may be shown: it is stored, or it is the terminal event
   * (an explicit end is better than a cut, even if the log could not take it).
   */
  async #copy(seq: number, event: StreamEvent): Promise<boolean> {
    const terminal = event.type !== 'delta';
    const startedAt = performance.now();
    // A try the store runs after this copy has given up must not land (a stalled Redis runs what it
    // queued when it wakes): the reply is cut before it by then, or ended elsewhere. The log refuses
    // it after the deadline, by its own clock; this instance gives up only once that has passed.
    const windowMs = Math.max(this.#storeWaitMs, MIN_COPY_WINDOW_MS);
    const deadline = Date.now() + windowMs;
    for (let tries = 1; ; tries++) {
      // A delta after one that failed for good is no longer part of the reply.
      if (!terminal && this.#broken !== undefined && seq > this.#broken) return false;
      let result: AppendResult | 'failed';
      try {
        result = await this.#onEvent!(seq, event, deadline);
      } catch {
        result = 'failed';
      }
      if (result === 'added' || result === 'duplicate') return true;
      if (result === 'ended') {
        // Another instance ended this reply (it found this one dead): it is not ours any more. The
        // reply keeps what was stored before this event, so that its own ending comes right after
        // what listeners were shown instead of past a position that never will be.
        if (terminal) return true;
        this.#breakAt(seq, 'lost');
        return false;
      }
      // The log lacks an earlier event: still being copied, or lost by the store after it took it.
      if (result === 'gap' && (await this.#refill(seq, deadline))) continue;
      if (result === 'expired' || performance.now() - startedAt >= windowMs + DEADLINE_MARGIN_MS) {
        if (terminal) return true;
        this.#breakAt(seq, 'unavailable');
        return false;
      }
      await pauseBeforeTry(tries);
    }
  }

  /**
   * Settles the outcome in the shared state, trying again while it fails, for up to `storeWaitMs`;
   * undefined when the state could not be reached.
   */
  async #settleOutcome(): Promise<Settlement | undefined> {
    const startedAt = performance.now();
    for (let tries = 1; ; tries++) {
      try {
        return await this.#settle!();
      } catch {
        if (performance.now() - startedAt >= this.#storeWaitMs) return undefined;
        await pauseBeforeTry(tries);
      }
    }
  }

  /**
   * Sends the events before `seq` again, for a log that lost some it had taken: Redis replicates
   * asynchronously, and a replica that takes over from a failed primary may lack its last writes.
   * Listeners were shown those events (they had been stored); this instance still has them, so
   * the log gets them back, the same at the same positions, instead of a hole. Positions the log
   * has are refused as duplicates. True when the event before `seq` is in the log afterwards.
   */
  #refill(seq: number, deadline: number): Promise<boolean> {
    if (this.#refilling) return this.#refilling.then(() => false);
    const refilling = (async () => {
      for (let span = REFILL_SPAN; ; span *= 2) {
        const from = Math.max(1, seq - span);
        const sent: Array<Promise<AppendResult>> = [];
        for (let at = from; at < seq; at++) sent.push(this.#onEvent!(at, this.#eventAt(at - 1), deadline));
        const results = await Promise.all(sent);
        // The first one is a gap too: the log lost more than that; go further back.
        if (results[0] === 'gap' && from > 1) continue;
        const taken = results.filter((r) => r === 'added').length;
        if (taken > 0) this.#onRefill?.(taken);
        const last = results.at(-1);
        return last === 'added' || last === 'duplicate';
      }
    })().catch(() => false);
    this.#refilling = refilling;
    void refilling.then(() => (this.#refilling = undefined));
    return refilling;
  }

  /** Event `seq` could not be stored (or the log was ended elsewhere): the reply keeps the deltas before it, and stops. */
  #breakAt(seq: number, reason: 'unavailable' | 'lost'): void {
    if (this.#broken !== undefined && this.#broken < seq) return;
    this.#broken = seq - 1;
    if (this.#deltas.length > seq - 1) this.#deltas.length = seq - 1;
    this.stop(reason);
  }

  /** Resolves once every copy under way has settled. */
  #allCopied(): Promise<void> {
    if (this.#copying === 0) return SETTLED_VOID;
    return new Promise((resolve) => {
      this.#copiesSettled = () => {
        this.#copiesSettled = undefined;
        resolve();
      };
    });
  }

  #end(): void {
    this.#ended = true;
    // A finished generation is kept for resumes only: let go of what only a running one needs.
    this.#controller = undefined;
    this.#onEvent = undefined;
    this.#keepAlive = undefined;
    this.#onFirstDelta = undefined;
    this.#settle = undefined;
    this.#settled = undefined;
    this.#finishedAt = Date.now();
    this.#clearGrace();
    this.#wakeAll();
  }

  #listenerJoined(): void {
    this.#listeners++;
    this.#onListener?.(1);
    this.#clearGrace();
  }

  #listenerLeft(): void {
    this.#listeners--;
    this.#onListener?.(-1);
    // A listener that leaves once the reply is over (tRPC SSE stops at the terminal event) leaves nothing to resume.
    if (this.#listeners > 0 || this.#over || this.#stopReason) return;
    if (this.#resumeGraceMs === 0 && !this.#keepAlive) {
      this.stop('no_listeners');
      return;
    }
    this.#armGrace();
  }

  #armGrace(): void {
    this.#graceTimer = setTimeout(() => {
      this.#graceTimer = undefined;
      if (!this.#keepAlive) {
        this.stop('no_listeners');
        return;
      }
      // A listener on another instance keeps the reply alive; a store we cannot ask does not.
      this.#keepAlive().then(
        (keep) => {
          if (this.#listeners > 0 || this.#ended) return;
          if (keep) this.#armGrace();
          else this.stop('no_listeners');
        },
        () => this.stop('no_listeners'),
      );
    }, this.#resumeGraceMs);
  }

  #clearGrace(): void {
    if (this.#graceTimer) {
      clearTimeout(this.#graceTimer);
      this.#graceTimer = undefined;
    }
  }
}
