import type { ChatMessage } from '../../../../shared/messages.ts';
import { SluiceError } from '../../errors.ts';
import {
  checkKeepLast,
  checkMaxSessions,
  checkReadOptions,
  ownerOfSessionKey,
  tooManySessions,
  type AppendOptions,
  type BeginOptions,
  type History,
  type HistoryMessage,
  type ReadOptions,
} from '../history.ts';
import { isoTime } from '../../iso-time.ts';

export interface MemoryHistoryOptions {
  /** Epoch ms, for the sessions' last-touched times. Default: Date.now. */
  readonly clock?: () => number;
  /**
   * At most this many sessions are kept: storing into a new one beyond it deletes the least
   * recently touched. Default: unbounded (then bound it with `expireIdle`).
   */
  readonly maxSessions?: number;
  /** Told of each session dropped for `maxSessions` (for the metrics). */
  readonly onEvicted?: () => void;
}

interface Entry {
  readonly message: ChatMessage;
  readonly seq: number;
  /** The reply this message is, or is the draft of (kept on the final so that late checkpoints are ignored). */
  readonly replyId: string | undefined;
  readonly draft: boolean;
}

interface Session {
  readonly owner: string;
  touchedAt: number;
  nextSeq: number;
  /** Oldest first, positions increasing by one, so a position minus the first one is an index. */
  readonly entries: Entry[];
}

/** History in this process: nothing survives a restart (`STORE=memory`). */
export class MemoryHistory implements History {
  readonly #clock: () => number;
  readonly #maxSessions: number;
  readonly #onEvicted: (() => void) | undefined;
  /** In least recently touched order (a touch moves a session to the end), so eviction is O(evicted). */
  readonly #sessions = new Map<string, Session>();
  /** Sessions held per owner (for BeginOptions.maxSessions): counted as they come and go, not searched. */
  readonly #owned = new Map<string, number>();
  #closed = false;

  constructor(options: MemoryHistoryOptions = {}) {
    const maxSessions = options.maxSessions ?? Number.POSITIVE_INFINITY;
    if (!(maxSessions >= 1)) throw new RangeError(`MemoryHistory: maxSessions must be at least 1, got ${maxSessions}`);
    this.#clock = options.clock ?? Date.now;
    this.#maxSessions = maxSessions;
    this.#onEvicted = options.onEvicted;
  }

  /** How many sessions are held. */
  get size(): number {
    return this.#sessions.size;
  }

  async read(sessionKey: string, options?: ReadOptions): Promise<HistoryMessage[]> {
    this.#checkOpen();
    const { limit, before } = checkReadOptions(options);
    const entries = this.#sessions.get(sessionKey)?.entries ?? [];
    if (entries.length === 0) return [];
    const end = Math.max(0, Math.min(entries.length, before - entries[0]!.seq));
    return entries.slice(Math.max(0, end - limit), end).map(readBack);
  }

  async append(sessionKey: string, message: ChatMessage, options: AppendOptions): Promise<number> {
    this.#checkOpen();
    const keepLast = checkKeepLast(options.keepLast);
    const { replyId } = options;
    const session = this.#touch(sessionKey);
    const { entries } = session;
    const draft = replyId === undefined ? undefined : this.#find(session, replyId);
    // A reply has one final message: a retry changes nothing (but see History's contract).
    if (draft && !draft.draft && !(draft.message.status === 'interrupted' && message.status === 'complete' && draft.seq === entries.at(-1)!.seq)) {
      return draft.seq;
    }
    let seq: number;
    if (draft) {
      seq = draft.seq;
      entries[seq - entries[0]!.seq] = { message: { ...message }, seq, replyId, draft: false };
    } else {
      seq = session.nextSeq++;
      entries.push({ message: { ...message }, seq, replyId, draft: false });
    }
    if (entries.length > keepLast) entries.splice(0, entries.length - keepLast);
    return seq;
  }

  async begin(sessionKey: string, message: ChatMessage, options: BeginOptions): Promise<number> {
    this.#checkOpen();
    const limit = checkMaxSessions(options.maxSessions);
    // Checked and created in one turn of the event loop: no other begin comes between.
    if (limit > 0 && !this.#sessions.has(sessionKey) && (this.#owned.get(ownerOfSessionKey(sessionKey)) ?? 0) >= limit) throw tooManySessions(limit);
    const seq = await this.append(sessionKey, message, { keepLast: options.keepLast });
    await this.checkpoint(sessionKey, options.replyId, '');
    return seq;
  }

  async checkpoint(sessionKey: string, replyId: string, text: string): Promise<void> {
    this.#checkOpen();
    const known = this.#sessions.get(sessionKey);
    const existing = known && this.#find(known, replyId);
    if (existing && !existing.draft) return; // the reply has its final message
    if (existing) {
      // As in the SQL stores, only the checkpoint that starts a draft touches the session.
      known.entries[existing.seq - known.entries[0]!.seq] = { ...existing, message: { ...existing.message, content: text } };
      return;
    }
    const session = this.#touch(sessionKey);
    const message: ChatMessage = { role: 'assistant', content: text, status: 'interrupted', createdAt: isoTime(this.#clock()) };
    session.entries.push({ message, seq: session.nextSeq++, replyId, draft: true });
  }

  async deleteSession(sessionKey: string): Promise<boolean> {
    this.#checkOpen();
    const session = this.#sessions.get(sessionKey);
    if (session) this.#drop(sessionKey, session);
    return session !== undefined;
  }

  async expireIdle(cutoff: number): Promise<number> {
    this.#checkOpen();
    let deleted = 0;
    for (const [key, session] of this.#sessions) {
      // Touch order is time order (unless the clock stepped back): the first recent one ends the sweep.
      if (session.touchedAt >= cutoff) break;
      this.#drop(key, session);
      deleted++;
    }
    return deleted;
  }

  async healthy(): Promise<boolean> {
    return !this.#closed;
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#sessions.clear();
    this.#owned.clear();
  }

  /** The reply's message; a reply is near the end of its session, so this looks from there. */
  #find(session: Session, replyId: string): Entry | undefined {
    return session.entries.findLast((e) => e.replyId === replyId);
  }

  #touch(sessionKey: string): Session {
    let session = this.#sessions.get(sessionKey);
    if (session) this.#sessions.delete(sessionKey);
    else {
      session = { owner: ownerOfSessionKey(sessionKey), touchedAt: 0, nextSeq: 1, entries: [] };
      // Over the bound while replies held every session, it comes back within it as they end.
      while (this.#sessions.size >= this.#maxSessions && this.#evictOne());
      this.#owned.set(session.owner, (this.#owned.get(session.owner) ?? 0) + 1);
    }
    session.touchedAt = this.#clock();
    this.#sessions.set(sessionKey, session);
    return session;
  }

  /**
   * Drops the least recently touched session that has no reply running: one that has would come
   * back with the reply's final message alone (its question gone). With every session running a
   * reply, none goes, and the bound is passed by the replies running (which have limits of their own).
   */
  #evictOne(): boolean {
    for (const [key, session] of this.#sessions) {
      if (session.entries.some((e) => e.draft)) continue;
      this.#drop(key, session);
      this.#onEvicted?.();
      return true;
    }
    return false;
  }

  /** Deletes a session held, and gives its owner its place back. */
  #drop(sessionKey: string, session: Session): void {
    this.#sessions.delete(sessionKey);
    const owned = (this.#owned.get(session.owner) ?? 1) - 1;
    if (owned > 0) this.#owned.set(session.owner, owned);
    else this.#owned.delete(session.owner);
  }

  #checkOpen(): void {
    if (this.#closed) throw new SluiceError('unavailable', 'The history store is closed');
  }
}

/** A copy in the read shape, so that callers cannot change what is stored. */
function readBack({ message, seq, replyId, draft }: Entry): HistoryMessage {
  const { seq: _given, usage, ...rest } = message;
  return {
    ...rest,
    ...(usage ? { usage: { ...usage } } : {}),
    seq,
    ...(draft ? { draftOf: replyId } : {}),
  };
}
