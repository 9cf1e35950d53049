import type { Logger } from 'pino';
import type { ChatMessage, SessionHistory } from '../../shared/messages.ts';
import { parseEventId } from '../../shared/stream-events.ts';
import { SluiceError, toSluiceError } from './errors.ts';
import { Generation, type Listener } from './generation.ts';
import { newGenerationId } from './ids.ts';
import type { Provider, ProviderMessage } from './providers/provider.ts';
import type { Store } from './store/store.ts';

export interface ChatServiceOptions {
  readonly store: Store;
  readonly provider: Provider;
  readonly logger: Logger;
  readonly resumeGraceMs: number;
  readonly eventLogTtlMs: number;
  readonly maxMessageChars: number;
}

export interface StartRequest {
  /** Who the session belongs to (an API key's id, or `anonymous`). */
  readonly owner: string;
  readonly sessionId: string;
  readonly message: string;
  /** The transport's name, for logs. */
  readonly transport: string;
}

export interface StatelessRequest {
  readonly owner: string;
  /** The whole conversation, as the caller sends it (OpenAI-style): nothing is read or stored. */
  readonly messages: readonly ProviderMessage[];
  readonly transport: string;
}

/** A transport's handle on a reply: the listener to read and the generation behind it. */
export interface Attachment {
  readonly generation: Generation;
  readonly listener: Listener;
}

function checkOptions(o: ChatServiceOptions): void {
  for (const name of ['resumeGraceMs', 'eventLogTtlMs', 'maxMessageChars'] as const) {
    if (!Number.isInteger(o[name]) || o[name] < 0) {
      throw new RangeError(`chat service: ${name} must be a non-negative integer, got ${o[name]}`);
    }
  }
}

/**
 * The transport-independent heart of Sluice: sessions, one generation per session, start / attach /
 * cancel, and history. It knows nothing of HTTP, WebSockets or tRPC.
 */
export class ChatService {
  readonly #o: ChatServiceOptions;
  /** Running generations and finished ones kept for resume, by id. */
  readonly #generations = new Map<string, Generation>();
  readonly #running = new Map<string, Generation>();
  readonly #runs = new Set<Promise<unknown>>();
  /** Finished generations in the order they finished, so expiry looks only at the head. */
  readonly #finished: Generation[] = [];
  #closing: Promise<void> | undefined;

  constructor(options: ChatServiceOptions) {
    checkOptions(options);
    this.#o = options;
  }

  /** How many generations are producing right now. */
  get runningCount(): number {
    return this.#running.size;
  }

  /** How many listeners follow running generations right now. */
  get listenerCount(): number {
    let n = 0;
    for (const g of this.#running.values()) n += g.listenerCount;
    return n;
  }

  static sessionKey(owner: string, sessionId: string): string {
    return `${owner}/${sessionId}`;
  }

  /** Starts a reply and attaches the caller as its first listener. */
  async start(request: StartRequest, signal?: AbortSignal): Promise<Attachment> {
    if (this.#closing) throw new SluiceError('unavailable', 'The server is shutting down');
    if (request.message.length > this.#o.maxMessageChars) {
      throw new SluiceError('invalid_request', `message: must be at most ${this.#o.maxMessageChars} characters`);
    }
    this.#expire();
    const { store } = this.#o;
    const sessionKey = ChatService.sessionKey(request.owner, request.sessionId);
    const id = newGenerationId();
    if (!(await store.acquireSessionLock(sessionKey, id))) throw new SluiceError('session_busy');

    let history: ChatMessage[];
    try {
      history = await store.getMessages(sessionKey);
      const userMessage: ChatMessage = {
        role: 'user',
        content: request.message,
        status: 'complete',
        createdAt: new Date().toISOString(),
      };
      await store.appendMessage(sessionKey, userMessage);
      history.push(userMessage);
    } catch (error) {
      await store.releaseSessionLock(sessionKey, id).catch(() => undefined);
      throw toSluiceError(error);
    }

    const generation = new Generation({
      id,
      owner: request.owner,
      sessionId: request.sessionId,
      sessionKey,
      resumeGraceMs: this.#o.resumeGraceMs,
    });
    // Attach before the provider runs so that a client that is already gone stops it at once.
    const listener = generation.listen(0, signal);
    this.#generations.set(id, generation);
    this.#running.set(sessionKey, generation);
    const run = this.#run(generation, history, request.transport, true);
    this.#runs.add(run);
    void run.finally(() => this.#runs.delete(run));
    return { generation, listener };
  }

  /**
   * Starts a reply that belongs to no session: the caller gives the whole context, nothing is
   * stored, no session is locked. Limits, cancellation on disconnect and logging still apply.
   */
  startStateless(request: StatelessRequest, signal?: AbortSignal): Attachment {
    if (this.#closing) throw new SluiceError('unavailable', 'The server is shutting down');
    const last = request.messages.at(-1);
    if (!last || last.role !== 'user') throw new SluiceError('invalid_request', 'messages: the last message must be from the user');
    const chars = request.messages.reduce((n, m) => n + m.content.length, 0);
    if (chars > this.#o.maxMessageChars) {
      throw new SluiceError('invalid_request', `messages: must be at most ${this.#o.maxMessageChars} characters in all`);
    }
    this.#expire();
    const id = newGenerationId();
    const generation = new Generation({
      id,
      owner: request.owner,
      sessionId: `stateless:${id}`,
      sessionKey: ChatService.sessionKey(request.owner, `stateless:${id}`),
      resumeGraceMs: this.#o.resumeGraceMs,
    });
    const listener = generation.listen(0, signal);
    this.#generations.set(id, generation);
    this.#running.set(generation.sessionKey, generation);
    const run = this.#run(generation, request.messages, request.transport, false);
    this.#runs.add(run);
    void run.finally(() => this.#runs.delete(run));
    return { generation, listener };
  }

  /** Attaches to the generation named by an event id, after that event. */
  attach(owner: string, lastEventId: string, signal?: AbortSignal): Attachment {
    this.#expire();
    const parsed = parseEventId(lastEventId);
    const generation = parsed && this.#generations.get(parsed.generationId);
    // Another owner's generation looks exactly like a missing one.
    if (!parsed || !generation || generation.owner !== owner) {
      throw new SluiceError('not_found', 'No resumable reply for this event id');
    }
    const afterSeq = Math.min(parsed.seq, generation.eventCount);
    return { generation, listener: generation.listen(afterSeq, signal) };
  }

  /** Stops the session's running generation, if any. */
  async cancel(owner: string, sessionId: string): Promise<boolean> {
    const generation = this.#running.get(ChatService.sessionKey(owner, sessionId));
    return generation ? generation.stop('cancelled') : false;
  }

  async history(owner: string, sessionId: string): Promise<SessionHistory> {
    try {
      const messages = await this.#o.store.getMessages(ChatService.sessionKey(owner, sessionId));
      return { sessionId, messages };
    } catch (error) {
      throw toSluiceError(error);
    }
  }

  /** Stops every running generation (their partial replies are stored) and waits for them. Idempotent. */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      for (const generation of this.#running.values()) generation.stop('shutdown');
      await Promise.allSettled([...this.#runs]);
      this.#generations.clear();
      this.#finished.length = 0;
    })();
    return this.#closing;
  }

  /** Resolves once every running generation has ended by itself, or after `timeoutMs`. */
  async drain(timeoutMs: number): Promise<void> {
    if (this.#runs.size === 0) return;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<void>((resolve) => (timer = setTimeout(resolve, timeoutMs)));
    await Promise.race([Promise.allSettled([...this.#runs]), timeout]);
    clearTimeout(timer);
  }

  async #run(generation: Generation, messages: readonly ProviderMessage[], transport: string, stored: boolean): Promise<void> {
    const { store, provider, logger } = this.#o;
    try {
      // The session is free again before the terminal event goes out, so a client that reacts to
      // `done` with its next message never finds its own session busy.
      const summary = await generation.run(provider, messages, async (reply) => {
        if (!stored) {
          this.#running.delete(generation.sessionKey);
          return;
        }
        try {
          await store.appendMessage(generation.sessionKey, reply);
        } finally {
          this.#running.delete(generation.sessionKey);
          await this.#release(generation);
        }
      });
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
      else if (summary.error) logger.warn({ ...line, code: summary.error.code }, 'generation failed');
      else logger.info(line, 'generation finished');
    } catch (error) {
      // run() catches everything it can; this guards against a bug taking the process down.
      logger.error({ generationId: generation.id, err: error }, 'generation crashed');
    } finally {
      if (this.#running.get(generation.sessionKey) === generation) {
        this.#running.delete(generation.sessionKey);
        if (stored) await this.#release(generation);
      }
      this.#finished.push(generation);
    }
  }

  async #release(generation: Generation): Promise<void> {
    await this.#o.store.releaseSessionLock(generation.sessionKey, generation.id).catch((error: unknown) => {
      this.#o.logger.error({ generationId: generation.id, err: error }, 'could not release session lock');
    });
  }

  #expire(): void {
    const cutoff = Date.now() - this.#o.eventLogTtlMs;
    while (this.#finished.length > 0 && (this.#finished[0]!.finishedAt ?? 0) <= cutoff) {
      this.#generations.delete(this.#finished.shift()!.id);
    }
  }
}
