import type { Logger } from 'pino';
import type { ChatMessage, SessionHistory } from '../../shared/messages.ts';
import type { EventRef } from '../../shared/stream-events.ts';
import { SluiceError, toSluiceError } from './errors.ts';
import { NOTHING_CONSUMED, type Listener } from './generation.ts';
import { newGenerationId } from './ids.ts';
import type { Held, Leases } from './leases.ts';
import { LocalGenerations } from './local-generations.ts';
import { NO_OBSERVER, type GenerationObserver } from './observer.ts';
import { endIfDead, type OrphanContext } from './orphans.ts';
import type { Provider, ProviderMessage } from './providers/provider.ts';
import { remoteListener } from './remote-listener.ts';
import { within } from '../../shared/within.ts';
import type { EventLog, GenerationRecord } from './store/event-log.ts';
import { storedReplyListener } from './stored-reply.ts';
import { sessionKeyOf, TOO_MANY_SESSIONS, type History, type HistoryMessage, type ReadOptions } from './store/history.ts';
import { CancelRouting } from './cancel-routing.ts';
import { Checkpoints } from './checkpoints.ts';
import { promptFrom } from './prompt.ts';
import { ReplyRunner } from './reply-runner.ts';
import type { Signals } from './store/signals.ts';
import { unstorable } from './text.ts';
import { isoTime } from './iso-time.ts';
import { ExpiringMap } from './store/memory/expiring-map.ts';

export interface ChatServiceOptions {
  readonly history: History;
  readonly events: EventLog;
  readonly leases: Leases;
  readonly signals: Signals;
  readonly provider: Provider;
  readonly logger: Logger;
  readonly resumeGraceMs: number;
  readonly eventLogTtlMs: number;
  /** Characters of finished replies kept in memory for resumes; the oldest go first beyond it. Default: no bound but their age. */
  readonly resumableMaxChars?: number;
  readonly maxMessageChars: number;
  /** The longest reply kept, in characters (see GenerationOptions.maxReplyChars; default DEFAULT_MAX_REPLY_CHARS). */
  readonly maxReplyChars?: number;
  /** The longest a reply may run, in milliseconds (see GenerationOptions.maxReplyMs; default DEFAULT_MAX_REPLY_MS; 0: none). */
  readonly maxReplyMs?: number;
  /** Presence entries of listeners on other instances expire after this unless refreshed. */
  readonly presenceTtlMs?: number;
  /** How long a remote listener's blocking read waits before it checks the generation's liveness. */
  readonly remotePollMs?: number;
  /** Messages kept per session; older ones are trimmed. */
  readonly maxHistoryMessages?: number;
  /** Replies one owner may have running at once, across instances (0: no limit). */
  readonly maxStreamsPerOwner?: number;
  /** Sessions one owner may hold, across instances: a turn in a new one beyond it is refused (0: no limit). */
  readonly maxSessionsPerOwner?: number;
  /** How often a running reply's text is saved in history, so that a crash keeps it (default 1000). */
  readonly checkpointMs?: number;
  readonly observer?: GenerationObserver;
}

export interface StartRequest {
  /** Who the session belongs to (an API key's id, or `anonymous`). */
  readonly owner: string;
  readonly sessionId: string;
  readonly message: string;
  /** The transport's name, for logs. */
  readonly transport: string;
  /**
   * False for transports whose clients cannot resume (the OpenAI route): a client that leaves then
   * stops the reply at once instead of after the resume window. Default true.
   */
  readonly resumable?: boolean;
  /** The first event is `start`, naming the reply (for clients that resume by the last id they saw). */
  readonly announce?: boolean;
  /**
   * The client says it sends this request again (it got no answer to it: a connection error). When
   * the session's last turn is this message with a reply that never finished (its process died),
   * that turn is answered again instead of a second one being added.
   */
  readonly retried?: boolean;
  /** The most tokens the caller wants in the reply (see ProviderRequest.maxTokens). */
  readonly maxTokens?: number | undefined;
}

export interface StatelessRequest {
  readonly owner: string;
  /** The whole conversation, as the caller sends it (OpenAI-style): nothing is read or stored. */
  readonly messages: readonly ProviderMessage[];
  readonly transport: string;
  /** The most tokens the caller wants in the reply (see ProviderRequest.maxTokens). */
  readonly maxTokens?: number | undefined;
}

/** A page of history: the newest `limit` messages, before position `before` when given. */
export type HistoryPage = ReadOptions;

/** A transport's handle on a reply: the listener to read, and the reply's id. */
export interface Attachment {
  readonly generationId: string;
  readonly listener: Listener;
}

/** How long a deletion waits for the session's running reply to end after its cancel. */
const DELETE_WAIT_MS = 5_000;
/** How far back a turn sent again is looked for (past the unfinished replies of its earlier tries). */
const UNANSWERED_LOOKBACK = 16;
/**
 * How soon after its reply ended a turn sent again is taken for one whose answer was lost on the
 * way back (an SDK retries within seconds), and answered with that reply.
 */
const ANSWER_RESENT_WITHIN_MS = 60_000;

/**
 * How long a start that failed once its turn's write was under way (whether it was stored is not
 * known: a commit whose answer was lost) lets the same message sent again answer that turn.
 */
const UNSURE_START_MS = 5 * 60_000;
/** Such starts remembered at most (the oldest go first): a store that fails every start must not grow the map for ever. */
const MAX_UNSURE_STARTS = 10_000;

/** How long a generation's record (and so its session lock) is kept: a day, or the event log's lifetime if longer. */
const RECORD_TTL_MS = 24 * 60 * 60 * 1000;
/** The least a reply's settled outcome stays marked (see ReplyRunnerOptions.settledMarkTtlMs). */
const SETTLED_MARK_MIN_TTL_MS = 60_000;

function checkOptions(o: ChatServiceOptions): void {
  for (const name of [
    'resumeGraceMs',
    'eventLogTtlMs',
    'maxMessageChars',
    'presenceTtlMs',
    'remotePollMs',
    'maxHistoryMessages',
    'maxStreamsPerOwner',
    'maxSessionsPerOwner',
    'checkpointMs',
    'resumableMaxChars',
    'maxReplyChars',
    'maxReplyMs',
  ] as const) {
    const value = o[name];
    if (value !== undefined && (!Number.isInteger(value) || value < 0)) {
      throw new RangeError(`chat service: ${name} must be a non-negative integer, got ${value}`);
    }
  }
}

/**
 * The transport-independent heart of Sluice: sessions, one generation per session, start / attach /
 * cancel, and history. It knows nothing of HTTP, WebSockets or tRPC, nor which store holds what.
 */
export class ChatService {
  readonly #o: ChatServiceOptions;
  /**
   * A session lock outlives its holder's liveness mark (it lasts as long as the generation's
   * record and log), so that a lock left by a dead instance is still there for the session's next
   * message to find: the orphan's partial reply is stored before the new turn (see #lockSession).
   */
  readonly #lockTtlMs: number;
  readonly #keepMessages: number;
  readonly #observer: GenerationObserver;
  readonly #orphans: OrphanContext;
  readonly #local: LocalGenerations;
  readonly #checkpoints: Checkpoints;
  readonly #cancels: CancelRouting;
  readonly #runner: ReplyRunner;
  #openListeners = 0;
  readonly #countListener = (delta: 1 | -1): void => {
    this.#openListeners += delta;
  };
  /** Listeners following a reply that runs on another instance (or ran before a restart). */
  #remoteListeners = 0;
  #remoteGone: (() => void) | undefined;
  readonly #countRemote = (delta: 1 | -1): void => {
    this.#countListener(delta);
    this.#remoteListeners += delta;
    if (this.#remoteListeners === 0) this.#remoteGone?.();
  };
  /** Sessions whose last start failed after its turn's write began (see UNSURE_START_MS). */
  readonly #unsureStarts = new ExpiringMap<true>({ max: MAX_UNSURE_STARTS });
  /** Aborted at close: streams following other instances' replies end with an event to resume from. */
  readonly #stopping = new AbortController();
  #draining = false;
  #closing: Promise<void> | undefined;

  constructor(options: ChatServiceOptions) {
    checkOptions(options);
    this.#o = options;
    this.#lockTtlMs = Math.max(options.eventLogTtlMs, RECORD_TTL_MS);
    this.#keepMessages = options.maxHistoryMessages || 1000;
    this.#observer = options.observer ?? NO_OBSERVER;
    this.#local = new LocalGenerations(options.eventLogTtlMs, options.resumableMaxChars ?? Number.POSITIVE_INFINITY);
    this.#checkpoints = new Checkpoints({ history: options.history, intervalMs: options.checkpointMs ?? 1000, logger: options.logger });
    const settledMarkTtlMs = Math.max(options.eventLogTtlMs, SETTLED_MARK_MIN_TTL_MS);
    this.#orphans = {
      events: options.events,
      history: options.history,
      leases: options.leases,
      logger: options.logger,
      eventLogTtlMs: options.eventLogTtlMs,
      maxHistoryMessages: this.#keepMessages,
      preamble: options.provider.preamble,
      signals: options.signals,
      settledMarkTtlMs,
      orphanMarkTtlMs: this.#lockTtlMs,
    };
    this.#cancels = new CancelRouting(options.signals, this.#local, options.logger);
    this.#runner = new ReplyRunner({
      history: options.history,
      events: options.events,
      signals: options.signals,
      provider: options.provider,
      logger: options.logger,
      observer: this.#observer,
      local: this.#local,
      checkpoints: this.#checkpoints,
      cancels: this.#cancels,
      resumeGraceMs: options.resumeGraceMs,
      eventLogTtlMs: options.eventLogTtlMs,
      settledMarkTtlMs,
      keepMessages: this.#keepMessages,
      ...(options.maxReplyChars === undefined ? {} : { maxReplyChars: options.maxReplyChars }),
      ...(options.maxReplyMs === undefined ? {} : { maxReplyMs: options.maxReplyMs }),
      onListener: this.#countListener,
    });
  }

  /** How many generations are producing right now on this instance. */
  get runningCount(): number {
    return this.#local.runningCount;
  }

  /** How many listeners follow this instance's running generations right now. */
  get listenerCount(): number {
    return this.#local.listenerCount;
  }

  /** Listeners open on this instance, on any generation (running, finished, or remote). */
  get openListeners(): number {
    return this.#openListeners;
  }

  /** Finished replies this instance keeps in memory for resumes (for `eventLogTtlMs`, within `resumableMaxChars`). */
  get resumableCount(): number {
    return this.#local.keptCount;
  }

  /** Starts a reply and attaches the caller as its first listener. */
  async start(request: StartRequest, signal?: AbortSignal): Promise<Attachment> {
    this.#checkOpen();
    if (request.message.length > this.#o.maxMessageChars) {
      throw new SluiceError('invalid_request', `message: must be at most ${this.#o.maxMessageChars} characters`);
    }
    const problem = unstorable(request.message);
    if (problem) throw new SluiceError('invalid_request', `message: ${problem}`);
    this.#local.expire();
    const { history, events, leases } = this.#o;
    const sessionKey = sessionKeyOf(request.owner, request.sessionId);
    const record: GenerationRecord = { id: newGenerationId(), owner: request.owner, sessionId: request.sessionId, sessionKey, stored: true };
    const taken: Held[] = [];
    // Once running, a reply whose session lock went to another reply stops (within a heartbeat).
    let lost = (): void => undefined;
    let writing = false;
    try {
      // Alive before it holds the lock: whoever finds it holding the lock finds it alive too, and
      // never takes a reply that is starting for one whose instance died (see endIfDead). The slot
      // and the mark are taken together (one round trip to a shared store, not two).
      const [slot, alive] = await takeBoth(this.#takeStreamSlot(record.owner), leases.markAlive(record.id), taken);
      const lock = await this.#lockSession(record, () => lost());
      taken.push(lock);
      const userMessage: ChatMessage = { role: 'user', content: request.message, status: 'complete', createdAt: isoTime() };
      // A client told to try again after a start that failed as its turn was written sends it again
      // without saying so. A turn sent again whose reply completed (its answer was lost on the way
      // back) is answered with that reply; one whose reply never finished gets a new one.
      const retried = request.retried || this.#unsureStarts.get(sessionKey) !== undefined;
      const last = retried ? await this.#lastTurn(sessionKey, request.message, request.retried === true) : undefined;
      if (last?.answer) {
        await Promise.all(taken.map((held) => held.release()));
        this.#unsureStarts.delete(sessionKey);
        return { generationId: record.id, listener: storedReplyListener(record.id, last.answer, request.maxTokens) };
      }
      // The shared log first: a start that fails there leaves nothing in history.
      const writer = await events.open(record, this.#lockTtlMs);
      // The message, and the reply's place right after it whatever happens to the session meanwhile
      // (for a turn sent again, only the reply's place: its message is there).
      const again = last?.unanswered;
      writing = true;
      if (again !== undefined) await history.checkpoint(sessionKey, record.id, '');
      const seq = again ?? (await this.#begin(record, userMessage));
      // The prompt is what came before the message (the lock keeps the session still): nothing when
      // the message is the session's first, which saves a conversation's first turn a read.
      const messages = promptFrom(seq > 1 ? [...(await this.#priorMessages(record, seq)), userMessage] : [userMessage]);
      const listener = this.#runner.launch(record, messages, writer, { slot, lock, alive }, request, signal);
      lost = () => void this.#local.get(record.id)?.stop('lost');
      if (retried) this.#unsureStarts.delete(sessionKey);
      return { generationId: record.id, listener };
    } catch (error) {
      await Promise.all(taken.map((held) => held.release()));
      const failure = toSluiceError(error);
      // Its turn may be stored though the store said otherwise (a commit whose answer was lost).
      if (writing && failure.code === 'unavailable') this.#unsureStarts.set(sessionKey, true, Date.now() + UNSURE_START_MS);
      const rejoined = failure.code === 'session_busy' ? await this.#rejoin(request, sessionKey, signal).catch(() => undefined) : undefined;
      if (rejoined) return rejoined;
      throw failure;
    }
  }

  /**
   * The session's running reply, from its first event, when it answers this very request: the same
   * owner's same message, with nobody following it. A client whose connection was cut once its turn
   * was taken, before it learnt the reply's id (a tRPC link reconnects and sends the subscription
   * again, an EventSource its request), gets its reply, not a conflict with it and then a second turn.
   */
  async #rejoin(request: StartRequest, sessionKey: string, signal: AbortSignal | undefined): Promise<Attachment | undefined> {
    const [asked, draft] = await this.#o.history.read(sessionKey, { limit: 2 });
    if (asked?.role !== 'user' || asked.content !== request.message || draft?.draftOf === undefined) return undefined;
    const local = this.#local.get(draft.draftOf);
    // A reply that is ending (stopped: the user pressed stop and sent the words again) is not this request's.
    if (local) {
      if (local.ended || local.stopping || local.owner !== request.owner || local.listenerCount > 0) return undefined;
      return { generationId: local.id, listener: local.listen(0, signal, request.announce ?? false) };
    }
    const record = await this.#o.events.load(draft.draftOf);
    if (!record || record.owner !== request.owner || (await this.#o.events.countListeners(record.id)) > 0) return undefined;
    if ((await this.#o.signals.cancelled([record.id])).length > 0) return undefined;
    return { generationId: record.id, listener: this.#remoteListener(record, 0, signal) };
  }

  /**
   * Starts a reply that belongs to no session: the caller gives the whole context, nothing is
   * stored, no session is locked. Limits, cancellation on disconnect and logging still apply.
   */
  async startStateless(request: StatelessRequest, signal?: AbortSignal): Promise<Attachment> {
    this.#checkOpen();
    const last = request.messages.at(-1);
    if (!last || last.role !== 'user') throw new SluiceError('invalid_request', 'messages: the last message must be from the user');
    const chars = request.messages.reduce((n, m) => n + m.content.length, 0);
    if (chars > this.#o.maxMessageChars) {
      throw new SluiceError('invalid_request', `messages: must be at most ${this.#o.maxMessageChars} characters in all`);
    }
    this.#local.expire();
    const id = newGenerationId();
    const sessionId = `stateless:${id}`;
    const record: GenerationRecord = { id, owner: request.owner, sessionId, sessionKey: sessionKeyOf(request.owner, sessionId), stored: false };
    const slot = await this.#takeStreamSlot(record.owner).catch((error: unknown) => {
      throw toSluiceError(error);
    });
    // Nobody can resume a reply that belongs to no session: a client that leaves stops it.
    const listener = this.#runner.launch(
      record,
      request.messages,
      undefined,
      { slot },
      { transport: request.transport, resumable: false, maxTokens: request.maxTokens },
      signal,
    );
    return { generationId: record.id, listener };
  }

  /** Attaches to the generation named by an event id, after that event, on this instance or any other. */
  async attach(owner: string, from: EventRef, signal?: AbortSignal, transport = 'unknown'): Promise<Attachment> {
    // Resuming stays possible while draining: the reply being resumed is one that may finish.
    if (this.#closing) throw new SluiceError('unavailable', 'The server is shutting down', { retryAfterSeconds: 1 });
    this.#local.expire();
    const notFound = new SluiceError('not_found', 'No resumable reply for this event id');
    const local = this.#local.get(from.generationId);
    if (local) {
      // Another owner's generation looks exactly like a missing one.
      if (local.owner !== owner) throw notFound;
      this.#observer.resumed(transport);
      // An id beyond what this instance has shown yet is not refused: another instance may have read
      // an event from the shared log before this one knew it was stored, and the listener waits for
      // it. One beyond what the reply has made cannot have been seen anywhere.
      if (from.seq > local.madeCount) throw notFound;
      return { generationId: local.id, listener: local.listen(from.seq, signal) };
    }
    const record = await this.#o.events.load(from.generationId).catch((error: unknown) => {
      throw toSluiceError(error);
    });
    if (!record || record.owner !== owner) throw notFound;
    // An event is in the log before anyone is shown it: one the log does not hold was never shown.
    const held = from.seq === 0 || (await this.#o.events.holds(record.id, from.seq).catch((error: unknown) => Promise.reject(toSluiceError(error))));
    if (!held) throw notFound;
    this.#observer.resumed(transport);
    return { generationId: record.id, listener: this.#remoteListener(record, from.seq, signal) };
  }

  #remoteListener(record: GenerationRecord, afterSeq: number, signal: AbortSignal | undefined): Listener {
    return remoteListener({
      ...this.#orphans,
      record,
      afterSeq,
      signal,
      pollMs: this.#o.remotePollMs ?? 1_000,
      outageWaitMs: this.#o.events.outageWaitMs ?? 1_500,
      presenceTtlMs: this.#o.presenceTtlMs ?? 10_000,
      onListener: this.#countRemote,
      stopping: this.#stopping.signal,
    });
  }

  /**
   * Attaches to the session's running reply from its first event, on this instance or any other;
   * undefined when none runs (a reply that has finished is in history, not here). For clients that
   * know a session, not an event id (the AI SDK's resume); not counted as a resume.
   */
  async attachSession(owner: string, sessionId: string, signal?: AbortSignal): Promise<Attachment | undefined> {
    if (this.#closing) throw new SluiceError('unavailable', 'The server is shutting down', { retryAfterSeconds: 1 });
    const sessionKey = sessionKeyOf(owner, sessionId);
    const local = this.#local.runningIn(sessionKey);
    if (local) return { generationId: local.id, listener: local.listen(0, signal) };
    let record: GenerationRecord | undefined;
    try {
      const holder = await this.#o.leases.sessionHolder(sessionKey);
      // A holder whose instance died is ended here (its partial stored): nothing left to follow.
      if (!holder || this.#local.get(holder) || (await endIfDead(this.#orphans, sessionKey, holder))) return undefined;
      record = await this.#o.events.load(holder);
    } catch (error) {
      throw toSluiceError(error);
    }
    if (!record || record.owner !== owner) return undefined;
    return { generationId: record.id, listener: this.#remoteListener(record, 0, signal) };
  }

  /**
   * Stops the session's running generation, whichever instance runs it. True only when the reply
   * will end as cancelled: the request and the reply's own settling are decided atomically in the
   * shared state, so a cancel that arrives as the reply completes answers false.
   */
  async cancel(owner: string, sessionId: string, replyId?: string): Promise<boolean> {
    const sessionKey = sessionKeyOf(owner, sessionId);
    const { signals, leases } = this.#o;
    try {
      const local = this.#local.runningIn(sessionKey);
      if (local) {
        if (replyId !== undefined && local.id !== replyId) return false;
        const cancelled = await signals.requestCancel(local.id, this.#lockTtlMs);
        if (cancelled) local.stop('cancelled');
        return cancelled;
      }
      const holder = await leases.sessionHolder(sessionKey);
      if (!holder || this.#local.get(holder) || (replyId !== undefined && holder !== replyId)) return false;
      // A reply whose instance died is not running: end it (its partial is stored), nothing to cancel.
      if (await endIfDead(this.#orphans, sessionKey, holder)) return false;
      return await signals.requestCancel(holder, this.#lockTtlMs);
    } catch (error) {
      throw toSluiceError(error);
    }
  }

  /** The session's messages, oldest first: all of them, or a page (the newest `limit` before `before`). */
  async history(owner: string, sessionId: string, page: HistoryPage = {}): Promise<SessionHistory> {
    try {
      // One reply runs at a time, and its draft is left out below: one more keeps the page full.
      const read = page.limit === undefined ? page : { ...page, limit: page.limit + 1 };
      const sessionKey = sessionKeyOf(owner, sessionId);
      let messages: ChatMessage[] | undefined;
      // A draft whose reply no longer runs may have ended between the read and the question (its
      // final message written just after the read): once read again, it is what a crash left.
      for (let reads = 1; !messages; reads++) messages = await this.#withoutRunningDrafts(await this.#o.history.read(sessionKey, read), reads > 1);
      if (page.limit !== undefined && messages.length > page.limit) messages.splice(0, messages.length - page.limit);
      return { sessionId, messages };
    } catch (error) {
      throw toSluiceError(error);
    }
  }

  /**
   * The messages read, less the drafts of replies still running (not history yet: a draft is what a
   * crash would leave). Undefined when a draft's reply has ended since, unless `final`.
   */
  async #withoutRunningDrafts(stored: readonly HistoryMessage[], final: boolean): Promise<ChatMessage[] | undefined> {
    const messages: ChatMessage[] = [];
    for (const { draftOf, ...message } of stored) {
      if (draftOf !== undefined) {
        if (this.#local.get(draftOf)?.ended === false || (await this.#o.leases.isAlive(draftOf))) continue;
        if (!final) return undefined;
      }
      messages.push(message);
    }
    return messages;
  }

  /**
   * Deletes a session and its history. A running reply is cancelled first, and its end waited for
   * (up to `DELETE_WAIT_MS`), so that its last write cannot bring the session back. False when
   * there was nothing to delete.
   */
  async deleteSession(owner: string, sessionId: string): Promise<boolean> {
    const sessionKey = sessionKeyOf(owner, sessionId);
    const cancelled = await this.cancel(owner, sessionId);
    try {
      const deadline = Date.now() + DELETE_WAIT_MS;
      let holder: string | undefined;
      while ((holder = await this.#o.leases.sessionHolder(sessionKey)) !== undefined && Date.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      // A reply still running (its instance slow to stop it: a long pause) would write its last
      // message after the deletion, and bring the session back: the deletion is refused instead,
      // unless that reply's instance is dead (its reply is then ended here).
      if (holder !== undefined && !(await endIfDead(this.#orphans, sessionKey, holder))) {
        throw new SluiceError('session_busy', "The session's reply has not stopped yet; delete it again in a moment");
      }
      return (await this.#o.history.deleteSession(sessionKey)) || cancelled;
    } catch (error) {
      throw toSluiceError(error);
    }
  }

  /** From now on new replies are refused with a retryable `unavailable`; running ones go on. */
  beginDrain(): void {
    this.#draining = true;
  }

  get draining(): boolean {
    return this.#draining || this.#closing !== undefined;
  }

  /**
   * Resolves once every running generation has ended by itself, and every stream following another
   * instance's reply has ended with it, or after `timeoutMs`.
   */
  async drain(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    await this.#local.settled(timeoutMs);
    if (this.#remoteListeners === 0) return;
    const gone = new Promise<void>((resolve) => (this.#remoteGone = resolve));
    await within(gone, Math.max(0, deadline - Date.now()), () => undefined);
    this.#remoteGone = undefined;
  }

  /** Stops every running generation (their partial replies are stored) and waits for them. Idempotent. */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      this.#stopping.abort();
      this.#local.stopAll('shutdown');
      await this.#local.settled();
      await this.#checkpoints.close();
      this.#cancels.close();
      this.#local.clear();
    })();
    return this.#closing;
  }

  #checkOpen(): void {
    if (this.#draining || this.#closing) throw new SluiceError('unavailable', 'The server is shutting down', { retryAfterSeconds: 1 });
  }

  async #takeStreamSlot(owner: string): Promise<Held> {
    const limit = this.#o.maxStreamsPerOwner ?? 0;
    const slot = await this.#o.leases.takeSlot(`streams:${owner}`, limit);
    if (!slot) throw new SluiceError('rate_limited', `Too many replies running at once for this key (limit ${limit})`, { retryAfterSeconds: 1 });
    return slot;
  }

  /**
   * The turn's start in history. The limit on sessions is the store's to apply: it knows whether
   * the session is new, and decides as it makes it (a turn answered again is in a session that exists).
   */
  async #begin(record: GenerationRecord, message: ChatMessage): Promise<number> {
    const options = { keepLast: this.#keepMessages, replyId: record.id, maxSessions: this.#o.maxSessionsPerOwner };
    try {
      return await this.#o.history.begin(record.sessionKey, message, options);
    } catch (error) {
      // Refused, nothing stored: the reply's record goes now, not in a day (a key at its limit may ask again and again).
      if (error instanceof SluiceError && error.reason === TOO_MANY_SESSIONS) await this.#o.events.expire(record.id, 0).catch(() => undefined);
      throw error;
    }
  }

  /**
   * The session's messages before position `seq` (the turn's message). A read that fails after the
   * turn began leaves the reply stored as failed, as any reply that fails before its first token.
   */
  async #priorMessages(record: GenerationRecord, seq: number): Promise<ChatMessage[]> {
    const { history } = this.#o;
    try {
      return await history.read(record.sessionKey, { before: seq });
    } catch (error) {
      const reply: ChatMessage = { role: 'assistant', content: '', status: 'failed', createdAt: isoTime(), usage: NOTHING_CONSUMED };
      // Best effort: the store just failed a read; a draft left behind reads back as interrupted.
      await history.append(record.sessionKey, reply, { keepLast: this.#keepMessages, replyId: record.id }).catch(() => undefined);
      throw error;
    }
  }

  /**
   * The session's last turn when its user message is `message`, the turn a client that got no
   * answer sends again: its completed reply (`answer`), or, when its reply never finished
   * (interrupted: its process died; or failed), the message's position. Read under the session's lock.
   */
  async #lastTurn(sessionKey: string, message: string, sentAgain: boolean): Promise<{ answer?: ChatMessage; unanswered?: number } | undefined> {
    const recent = await this.#o.history.read(sessionKey, { limit: UNANSWERED_LOOKBACK });
    const reply = recent.at(-1);
    const asked = recent.at(-2);
    // Only a request that says it is sent again (a try that got no answer), and soon after the reply
    // ended: the same words asked again later are a new turn, whose first try may have failed too.
    const answered =
      sentAgain &&
      reply?.role === 'assistant' &&
      reply.status === 'complete' &&
      reply.draftOf === undefined &&
      Date.now() - Date.parse(reply.createdAt) < ANSWER_RESENT_WITHIN_MS;
    if (answered && asked?.role === 'user' && asked.content === message) {
      const { seq: _seq, draftOf: _draft, ...answer } = reply;
      return { answer };
    }
    // Each earlier try that got no answer left an unfinished reply after the message.
    let at = recent.length - 1;
    while (at >= 0 && recent[at]!.role === 'assistant' && recent[at]!.status !== 'complete') at--;
    const user = recent[at];
    return at < recent.length - 1 && user?.role === 'user' && user.content === message ? { unanswered: user.seq } : undefined;
  }

  /** Takes the session's lock; a lock left by a dead instance is repaired and taken over. */
  async #lockSession(record: GenerationRecord, onLost: () => void): Promise<Held> {
    const { leases } = this.#o;
    const lock = await leases.lockSession(record.sessionKey, record.id, this.#lockTtlMs, onLost);
    if (lock) return lock;
    const holder = await leases.sessionHolder(record.sessionKey);
    if (holder && !this.#local.get(holder) && (await endIfDead(this.#orphans, record.sessionKey, holder))) {
      const taken = await leases.lockSession(record.sessionKey, record.id, this.#lockTtlMs, onLost);
      if (taken) return taken;
    }
    throw new SluiceError('session_busy');
  }
}

/**
 * Both holds, or neither: each one taken is pushed to `taken` (which the caller releases when the
 * start fails), and the first failure is thrown once both have settled.
 */
async function takeBoth(first: Promise<Held>, second: Promise<Held>, taken: Held[]): Promise<[Held, Held]> {
  const [a, b] = await Promise.allSettled([first, second]);
  for (const result of [a, b]) if (result.status === 'fulfilled') taken.push(result.value);
  if (a.status === 'rejected') throw a.reason;
  if (b.status === 'rejected') throw b.reason;
  return [a.value, b.value];
}
