import type { Logger } from 'pino';
import type { ChatMessage, SessionHistory } from '../../shared/messages.ts';
import { parseEventId, type StreamEvent } from '../../shared/stream-events.ts';
import { SluiceError, toSluiceError } from './errors.ts';
import { Generation, type Listener } from './generation.ts';
import { newGenerationId } from './ids.ts';
import type { Provider, ProviderMessage } from './providers/provider.ts';
import { endOrphan, remoteListener } from './remote-listener.ts';
import type { GenerationRecord, Store } from './store/store.ts';
import { NO_OBSERVER, type GenerationObserver } from './observer.ts';

export interface ChatServiceOptions {
  readonly store: Store;
  readonly provider: Provider;
  readonly logger: Logger;
  readonly resumeGraceMs: number;
  readonly eventLogTtlMs: number;
  readonly maxMessageChars: number;
  /**
   * A running generation's liveness mark expires this long after its instance stops refreshing it
   * (the instance died): a resuming client then gets the `interrupted` ending, and the session's
   * next message stores the partial reply and goes ahead.
   */
  readonly livenessTtlMs?: number;
  /** How long a remote listener's blocking read waits before it checks the generation's liveness. */
  readonly remotePollMs?: number;
  /** Messages kept per session; older ones are trimmed. */
  readonly maxHistoryMessages?: number;
  /** Replies one owner may have running at once, across instances (0: no limit). */
  readonly maxStreamsPerOwner?: number;
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
}

export interface StatelessRequest {
  readonly owner: string;
  /** The whole conversation, as the caller sends it (OpenAI-style): nothing is read or stored. */
  readonly messages: readonly ProviderMessage[];
  readonly transport: string;
}

/** A transport's handle on a reply: the listener to read, and the reply's id. */
export interface Attachment {
  readonly generationId: string;
  readonly listener: Listener;
}

/** How long a generation's record (and so its session lock) is kept: a day, or the event log's lifetime if longer. */
const RECORD_TTL_MS = 24 * 60 * 60 * 1000;

function checkOptions(o: ChatServiceOptions): void {
  for (const name of ['resumeGraceMs', 'eventLogTtlMs', 'maxMessageChars', 'livenessTtlMs', 'remotePollMs', 'maxHistoryMessages', 'maxStreamsPerOwner'] as const) {
    const value = o[name];
    if (value !== undefined && (!Number.isInteger(value) || value < 0)) {
      throw new RangeError(`chat service: ${name} must be a non-negative integer, got ${value}`);
    }
  }
}

/** A running generation's entry: the generation and what its instance must keep refreshing. */
interface Running {
  readonly generation: Generation;
  readonly record: GenerationRecord;
}

/**
 * The transport-independent heart of Sluice: sessions, one generation per session, start / attach /
 * cancel, and history. It knows nothing of HTTP, WebSockets or tRPC.
 */
export class ChatService {
  readonly #o: ChatServiceOptions;
  readonly #livenessTtlMs: number;
  /**
   * A session lock outlives its holder's liveness mark (it lasts as long as the generation's
   * record and log), so that a lock left by a dead instance is still there for the session's next
   * message to find: the orphan's partial reply is stored before the new turn (see #lockSession).
   */
  readonly #lockTtlMs: number;
  readonly #remotePollMs: number;
  readonly #keepMessages: number;
  readonly #observer: GenerationObserver;
  /** Generations of this instance, running or finished and still resumable, by id. */
  readonly #generations = new Map<string, Generation>();
  /** Running generations of this instance, by session key. */
  readonly #running = new Map<string, Running>();
  readonly #runs = new Set<Promise<unknown>>();
  /** Finished generations in the order they finished, so expiry looks only at the head. */
  readonly #finished: Generation[] = [];
  readonly #unsubscribeCancel: () => void;
  #heartbeat: NodeJS.Timeout | undefined;
  #openListeners = 0;
  readonly #countListener = (delta: 1 | -1): void => {
    this.#openListeners += delta;
  };
  #draining = false;
  #closing: Promise<void> | undefined;

  constructor(options: ChatServiceOptions) {
    checkOptions(options);
    this.#o = options;
    this.#livenessTtlMs = options.livenessTtlMs ?? 10_000;
    this.#lockTtlMs = Math.max(options.eventLogTtlMs, RECORD_TTL_MS);
    this.#remotePollMs = options.remotePollMs ?? 1_000;
    this.#keepMessages = options.maxHistoryMessages || 1000;
    this.#observer = options.observer ?? NO_OBSERVER;
    this.#unsubscribeCancel = options.store.onCancel((generationId) => {
      this.#generations.get(generationId)?.stop('cancelled');
    });
  }

  /** How many generations are producing right now on this instance. */
  get runningCount(): number {
    return this.#running.size;
  }

  /** How many listeners follow this instance's running generations right now. */
  get listenerCount(): number {
    let n = 0;
    for (const { generation } of this.#running.values()) n += generation.listenerCount;
    return n;
  }

  /** Listeners open on this instance, on any generation (running, finished, or remote). */
  get openListeners(): number {
    return this.#openListeners;
  }

  static sessionKey(owner: string, sessionId: string): string {
    return `${owner}/${sessionId}`;
  }

  /** Starts a reply and attaches the caller as its first listener. */
  async start(request: StartRequest, signal?: AbortSignal): Promise<Attachment> {
    this.#checkOpen();
    if (request.message.length > this.#o.maxMessageChars) {
      throw new SluiceError('invalid_request', `message: must be at most ${this.#o.maxMessageChars} characters`);
    }
    this.#expire();
    const { store } = this.#o;
    const sessionKey = ChatService.sessionKey(request.owner, request.sessionId);
    const record: GenerationRecord = {
      id: newGenerationId(),
      owner: request.owner,
      sessionId: request.sessionId,
      sessionKey,
      stored: true,
    };
    await this.#takeStreamSlot(record);
    try {
      // Alive before it holds the lock: whoever finds it holding the lock finds it alive too, and
      // never takes a reply that is starting for one whose instance died (see #endIfDead).
      if (store.shared) await store.markAlive(record.id, this.#livenessTtlMs);
      await this.#lockSession(record);
    } catch (error) {
      if (store.shared) await store.clearAlive(record.id).catch(() => undefined);
      await this.#releaseStreamSlot(record);
      throw toSluiceError(error);
    }

    let history: ChatMessage[];
    try {
      history = await store.getMessages(sessionKey);
      const userMessage: ChatMessage = {
        role: 'user',
        content: request.message,
        status: 'complete',
        createdAt: new Date().toISOString(),
      };
      // The record lets other instances attach; a store nobody else reads does not need it.
      if (store.shared) {
        await Promise.all([store.appendMessage(sessionKey, userMessage, this.#keepMessages), store.saveGeneration(record, this.#lockTtlMs)]);
      } else await store.appendMessage(sessionKey, userMessage, this.#keepMessages);
      history.push(userMessage);
    } catch (error) {
      await store.releaseSessionLock(sessionKey, record.id).catch(() => undefined);
      await this.#releaseStreamSlot(record);
      throw toSluiceError(error);
    }
    return this.#launch(record, history, request.transport, signal, request.resumable ?? true);
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
    this.#expire();
    const id = newGenerationId();
    const sessionId = `stateless:${id}`;
    const record: GenerationRecord = {
      id,
      owner: request.owner,
      sessionId,
      sessionKey: ChatService.sessionKey(request.owner, sessionId),
      stored: false,
    };
    await this.#takeStreamSlot(record);
    // Nobody can resume a reply that belongs to no session: a client that leaves stops it.
    return this.#launch(record, request.messages, request.transport, signal, false);
  }

  /** Attaches to the generation named by an event id, after that event, on this instance or any other. */
  async attach(owner: string, lastEventId: string, signal?: AbortSignal, transport = 'unknown'): Promise<Attachment> {
    // Resuming stays possible while draining: the reply being resumed is one that may finish.
    if (this.#closing) throw new SluiceError('unavailable', 'The server is shutting down', { retryAfterSeconds: 1 });
    this.#expire();
    const parsed = parseEventId(lastEventId);
    if (!parsed) throw new SluiceError('invalid_request', 'Last-Event-ID: must look like "<generation>:<seq>"');
    const notFound = new SluiceError('not_found', 'No resumable reply for this event id');
    const local = this.#generations.get(parsed.generationId);
    if (local) {
      // Another owner's generation looks exactly like a missing one.
      if (local.owner !== owner) throw notFound;
      this.#observer.resumed(transport);
      return { generationId: local.id, listener: local.listen(Math.min(parsed.seq, local.eventCount), signal) };
    }
    const record = await this.#o.store.loadGeneration(parsed.generationId);
    if (!record || record.owner !== owner) throw notFound;
    this.#observer.resumed(transport);
    const listener = remoteListener({
      store: this.#o.store,
      record,
      afterSeq: parsed.seq,
      signal,
      logger: this.#o.logger,
      pollMs: this.#remotePollMs,
      maxHistoryMessages: this.#keepMessages,
      presenceTtlMs: this.#livenessTtlMs,
      eventLogTtlMs: this.#o.eventLogTtlMs,
    });
    return { generationId: record.id, listener };
  }

  // ---- Added on the uichat branch for `GET /v1/ui/chat/{chatId}/stream`, whose clients know a chat
  // (session) id, not an event id. ----
  /**
   * Attaches to the session's running reply from its first event, on this instance or any other;
   * undefined when none runs (a reply that has finished is in history, not here). Not counted as a
   * resume: the caller knows whether it is one.
   */
  async attachSession(owner: string, sessionId: string, signal?: AbortSignal): Promise<Attachment | undefined> {
    if (this.#closing) throw new SluiceError('unavailable', 'The server is shutting down', { retryAfterSeconds: 1 });
    const sessionKey = ChatService.sessionKey(owner, sessionId);
    const local = this.#running.get(sessionKey);
    if (local) return { generationId: local.generation.id, listener: local.generation.listen(0, signal) };
    // Without a shared store, what does not run here runs nowhere.
    if (!this.#o.store.shared) return undefined;
    let record: GenerationRecord | undefined;
    try {
      const holder = await this.#o.store.sessionLockHolder(sessionKey);
      // A holder whose instance died is ended here (its partial stored): nothing left to follow.
      if (!holder || (await this.#endIfDead(sessionKey, holder))) return undefined;
      record = await this.#o.store.loadGeneration(holder);
    } catch (error) {
      throw toSluiceError(error);
    }
    if (!record || record.owner !== owner) return undefined;
    const listener = remoteListener({
      store: this.#o.store,
      record,
      afterSeq: 0,
      signal,
      logger: this.#o.logger,
      pollMs: this.#remotePollMs,
      maxHistoryMessages: this.#keepMessages,
      presenceTtlMs: this.#livenessTtlMs,
      eventLogTtlMs: this.#o.eventLogTtlMs,
    });
    return { generationId: record.id, listener };
  }
  // ---- end of the uichat addition ----

  /** Stops the session's running generation, whichever instance runs it. */
  async cancel(owner: string, sessionId: string): Promise<boolean> {
    const sessionKey = ChatService.sessionKey(owner, sessionId);
    const local = this.#running.get(sessionKey);
    if (local) return local.generation.stop('cancelled');
    try {
      const holder = await this.#o.store.sessionLockHolder(sessionKey);
      if (!holder) return false;
      // A reply whose instance died is not running: end it (its partial is stored), nothing to cancel.
      if (await this.#endIfDead(sessionKey, holder)) return false;
      await this.#o.store.publishCancel(holder);
      return true;
    } catch (error) {
      throw toSluiceError(error);
    }
  }

  async history(owner: string, sessionId: string): Promise<SessionHistory> {
    try {
      const messages = await this.#o.store.getMessages(ChatService.sessionKey(owner, sessionId));
      return { sessionId, messages };
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

  /** Resolves once every running generation has ended by itself, or after `timeoutMs`. */
  async drain(timeoutMs: number): Promise<void> {
    if (this.#runs.size === 0) return;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<void>((resolve) => (timer = setTimeout(resolve, timeoutMs)));
    await Promise.race([Promise.allSettled([...this.#runs]), timeout]);
    clearTimeout(timer);
  }

  /** Stops every running generation (their partial replies are stored) and waits for them. Idempotent. */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      for (const { generation } of this.#running.values()) generation.stop('shutdown');
      await Promise.allSettled([...this.#runs]);
      this.#unsubscribeCancel();
      this.#stopHeartbeat();
      this.#generations.clear();
      this.#finished.length = 0;
    })();
    return this.#closing;
  }

  #checkOpen(): void {
    if (this.#draining || this.#closing) throw new SluiceError('unavailable', 'The server is shutting down', { retryAfterSeconds: 1 });
  }

  #slotKey(owner: string): string {
    return `streams:${owner}`;
  }

  async #takeStreamSlot(record: GenerationRecord): Promise<void> {
    const limit = this.#o.maxStreamsPerOwner ?? 0;
    if (limit === 0) return;
    let ok: boolean;
    try {
      ok = await this.#o.store.acquireSlot(this.#slotKey(record.owner), record.id, limit, this.#livenessTtlMs);
    } catch (error) {
      throw toSluiceError(error);
    }
    if (!ok) throw new SluiceError('rate_limited', `Too many replies running at once for this key (limit ${limit})`, { retryAfterSeconds: 1 });
  }

  async #releaseStreamSlot(record: GenerationRecord): Promise<void> {
    if (!this.#o.maxStreamsPerOwner) return;
    await this.#o.store.releaseSlot(this.#slotKey(record.owner), record.id).catch(() => undefined);
  }

  /** Takes the session's lock; a lock left by a dead instance is repaired and taken over. */
  async #lockSession(record: GenerationRecord): Promise<void> {
    const { store } = this.#o;
    try {
      if (await store.acquireSessionLock(record.sessionKey, record.id, this.#lockTtlMs)) return;
      const holder = await store.sessionLockHolder(record.sessionKey);
      if (holder && (await this.#endIfDead(record.sessionKey, holder))) {
        if (await store.acquireSessionLock(record.sessionKey, record.id, this.#lockTtlMs)) return;
      }
    } catch (error) {
      throw toSluiceError(error);
    }
    throw new SluiceError('session_busy');
  }

  /**
   * If the session lock's holder is a generation whose instance died (no liveness mark), ends it
   * as `interrupted` (storing its partial reply) and frees the session. True when it was dead.
   */
  async #endIfDead(sessionKey: string, holder: string): Promise<boolean> {
    const { store } = this.#o;
    if (this.#generations.has(holder) || (await store.isAlive(holder))) return false;
    const orphan = await store.loadGeneration(holder);
    if (orphan) {
      await endOrphan({
        store,
        record: orphan,
        logger: this.#o.logger,
        eventLogTtlMs: this.#o.eventLogTtlMs,
        maxHistoryMessages: this.#keepMessages,
      });
    } else {
      // Nothing left to store: only the dead holder's lock remains.
      await store.releaseSessionLock(sessionKey, holder);
    }
    return true;
  }

  #launch(
    record: GenerationRecord,
    messages: readonly ProviderMessage[],
    transport: string,
    signal: AbortSignal | undefined,
    resumable: boolean,
  ): Attachment {
    const { store, logger } = this.#o;
    let lastWrite: Promise<unknown> = Promise.resolve();
    let writeFailed = false;
    const generation = new Generation({
      id: record.id,
      owner: record.owner,
      sessionId: record.sessionId,
      sessionKey: record.sessionKey,
      resumeGraceMs: resumable ? this.#o.resumeGraceMs : 0,
      // Copies go out in order on one connection; only the last one needs waiting for.
      // Only a store other processes read needs a copy of each event (this process resumes from memory).
      onEvent:
        record.stored && store.shared
          ? (seq: number, event: StreamEvent) =>
              (lastWrite = store.appendEvent(record.id, seq, event).catch((error: unknown) => {
                if (!writeFailed) logger.warn({ generationId: record.id, err: error }, 'could not log stream event');
                writeFailed = true;
              }))
          : undefined,
      keepAlive: record.stored ? async () => (await store.countListeners(record.id)) > 0 : undefined,
      onListener: this.#countListener,
      onFirstToken: (ms) => this.#observer.firstToken(ms),
    });
    // Attach before the provider runs so that a client that is already gone stops it at once.
    const listener = generation.listen(0, signal);
    this.#generations.set(record.id, generation);
    this.#running.set(record.sessionKey, { generation, record });
    this.#startHeartbeat();
    this.#observer.started(transport);
    const run = this.#run(generation, record, messages, transport, () => lastWrite);
    this.#runs.add(run);
    void run.finally(() => this.#runs.delete(run));
    return { generationId: record.id, listener };
  }

  async #run(
    generation: Generation,
    record: GenerationRecord,
    messages: readonly ProviderMessage[],
    transport: string,
    lastWrite: () => Promise<unknown>,
  ): Promise<void> {
    const { store, provider, logger } = this.#o;
    try {
      // The session is free again before the terminal event goes out, so a client that reacts to
      // `done` with its next message never finds its own session busy.
      const summary = await generation.run(provider, messages, async (reply) => {
        try {
          if (record.stored) await store.appendMessage(record.sessionKey, reply, this.#keepMessages);
        } finally {
          await this.#finishRunning(record);
        }
      });
      this.#observer.ended(summary.outcome, transport, summary.chunks, summary.reply.usage); // uichat: usage for the metrics
      if (summary.tokenGapMs) this.#observer.tokenGaps(summary.tokenGapMs.mean, summary.tokenGapMs.max);
      if (summary.error) this.#observer.failed(summary.error.code);
      const line = {
        generationId: generation.id,
        sessionId: generation.sessionId,
        transport,
        outcome: summary.outcome,
        chunks: summary.chunks,
        durationMs: Math.round(summary.durationMs),
        firstTokenMs: summary.firstTokenMs === undefined ? undefined : Math.round(summary.firstTokenMs),
      };
      if (summary.error?.code === 'internal') logger.error({ ...line, err: summary.error.cause }, 'generation failed unexpectedly');
      else if (summary.error) logger.warn({ ...line, code: summary.error.code, err: summary.error.cause }, 'generation failed');
      else logger.info(line, 'generation finished');
    } catch (error) {
      // run() catches everything it can; this guards against a bug taking the process down.
      logger.error({ generationId: generation.id, err: error }, 'generation crashed');
    } finally {
      await this.#finishRunning(record);
      this.#finished.push(generation);
      if (record.stored && store.shared) {
        // The liveness mark goes only after the final event is in the shared log (see remote-listener).
        await lastWrite();
        await store.expireGeneration(record.id, this.#o.eventLogTtlMs).catch((error: unknown) => {
          logger.warn({ generationId: record.id, err: error }, 'could not expire generation log');
        });
      }
    }
  }

  async #finishRunning(record: GenerationRecord): Promise<void> {
    if (this.#running.get(record.sessionKey)?.record !== record) return;
    this.#running.delete(record.sessionKey);
    if (this.#running.size === 0) this.#stopHeartbeat();
    await this.#releaseStreamSlot(record);
    if (!record.stored) return;
    await this.#o.store.releaseSessionLock(record.sessionKey, record.id).catch((error: unknown) => {
      this.#o.logger.error({ generationId: record.id, err: error }, 'could not release session lock');
    });
  }

  // One timer for all running generations keeps their locks and liveness marks from expiring.
  #startHeartbeat(): void {
    // Only shared stores and expiring slots need refreshing; in-process locks do not expire.
    if (this.#heartbeat || (!this.#o.store.shared && !this.#o.maxStreamsPerOwner)) return;
    this.#heartbeat = setInterval(() => {
      for (const { record } of this.#running.values()) {
        if (this.#o.maxStreamsPerOwner) {
          this.#o.store.refreshSlot(this.#slotKey(record.owner), record.id, this.#livenessTtlMs).catch(() => undefined);
        }
        if (!record.stored || !this.#o.store.shared) continue;
        this.#o.store.refreshSessionLock(record.sessionKey, record.id, this.#lockTtlMs).catch(() => undefined);
        this.#o.store.markAlive(record.id, this.#livenessTtlMs).catch(() => undefined);
      }
    }, Math.max(100, Math.floor(this.#livenessTtlMs / 3)));
    this.#heartbeat.unref();
  }

  #stopHeartbeat(): void {
    clearInterval(this.#heartbeat);
    this.#heartbeat = undefined;
  }

  #expire(): void {
    const cutoff = Date.now() - this.#o.eventLogTtlMs;
    while (this.#finished.length > 0 && (this.#finished[0]!.finishedAt ?? 0) <= cutoff) {
      this.#generations.delete(this.#finished.shift()!.id);
    }
  }
}
