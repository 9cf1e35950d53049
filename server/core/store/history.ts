import type { ChatMessage } from '../../../shared/messages.ts';
import { SluiceError } from '../errors.ts';

/** A stored message: always numbered, and marked while it is the draft of a running reply. */
export interface HistoryMessage extends ChatMessage {
  readonly seq: number;
  /**
   * Set on a draft: the reply id its checkpoints came from. A draft reads back as an assistant
   * message with status `interrupted` (what it is once its reply died with its process); while
   * that reply still runs, the caller may hide it. Not part of the public message shape.
   */
  readonly draftOf?: string;
}

export interface ReadOptions {
  /** Only the newest `limit` messages (of those before `before`). Unset: all of them. */
  readonly limit?: number;
  /** Only messages whose `seq` is below this one (a cursor: the oldest `seq` the reader holds). */
  readonly before?: number;
}

export interface AppendOptions {
  /** After appending, only the newest `keepLast` messages are kept (the oldest are trimmed). */
  readonly keepLast: number;
  /** The reply this message ends: its draft, if checkpoints made one, is replaced in place. */
  readonly replyId?: string;
}

export interface BeginOptions {
  /** As in AppendOptions, for the message: the draft is on top until its final message (which trims). */
  readonly keepLast: number;
  /** The reply that answers the message: its draft takes the next position. */
  readonly replyId: string;
  /**
   * Sessions the key's owner may hold (0 or unset: no limit). When the session is new and its owner
   * holds this many already, nothing is stored and the call rejects with `tooManySessions`. A
   * session that exists is never refused, and nothing is dropped to make room.
   */
  readonly maxSessions?: number;
}

/**
 * A session's key, in every store: its owner, `/`, its id. Session ids hold no `/`
 * (SESSION_ID_PATTERN), so the owner is what comes before the last one: that is how a store knows
 * whose session a key is, to count an owner's sessions.
 */
export function sessionKeyOf(owner: string, sessionId: string): string {
  return `${owner}/${sessionId}`;
}

/** The owner of a session key (see sessionKeyOf); empty for a key without one. */
export function ownerOfSessionKey(sessionKey: string): string {
  const slash = sessionKey.lastIndexOf('/');
  return slash === -1 ? '' : sessionKey.slice(0, slash);
}

/** The metrics' and logs' name for a turn refused by BeginOptions.maxSessions. */
export const TOO_MANY_SESSIONS = 'too_many_sessions';

/** What `begin` rejects with when the owner of a new session holds `limit` sessions already. */
export function tooManySessions(limit: number): SluiceError {
  return new SluiceError(
    'rate_limited',
    `This key (or user) holds ${limit} sessions or more, the most it may (MAX_SESSIONS_PER_KEY): delete one (DELETE /v1/sessions/{session_id}, or chat.deleteSession) before starting another`,
    { reason: TOO_MANY_SESSIONS },
  );
}

export function checkMaxSessions(maxSessions: number | undefined): number {
  const limit = maxSessions ?? 0;
  if (!Number.isInteger(limit) || limit < 0) throw new RangeError(`History.begin: maxSessions must be a non-negative integer, got ${limit}`);
  return limit;
}

/**
 * Where conversations last: the History port. One implementation per backend (memory, SQLite,
 * PostgreSQL, Redis), each held to the same contract test (test/history-contract.test.ts).
 * Session keys are built by sessionKeyOf (owner, then session id), so one store serves every
 * tenant, deleting a key deletes one owner's session only, and a store can count an owner's sessions.
 *
 * The contract:
 * - Positions: every message stored in a session gets the next `seq` (1, 2, 3, ...). A draft takes
 *   its position at its first checkpoint and its final message keeps it, so a reply stays right
 *   after its user message. Positions are never reused while the session lasts (deleting the
 *   session starts it again from 1).
 * - Order: the writes to one session through one store instance take effect in the order they
 *   were called (except that a reply's checkpoint still queued takes the text of a later one),
 *   and a read that starts after a write resolved sees it.
 * - Drafts: `checkpoint` saves a running reply's text so far (creating the draft, then replacing
 *   its text). The reply's final `append` with the same `replyId` replaces the draft (or is
 *   appended, when no checkpoint came first). A reply has one final message: appending it again
 *   (a retry) or checkpointing it afterwards changes nothing, except that a `complete` one replaces
 *   an `interrupted` one in place while nothing came after it in the session: another process
 *   ended the reply's draft for a crash's while the reply went on to its end (what its client got
 *   is what history keeps). A draft left by a process that
 *   died reads back as that reply, `interrupted`, with the last checkpointed text. Checkpoints
 *   are cheap to call (writes are batched) but each one writes the whole text: callers
 *   checkpoint on a cadence (about every second), not on every token.
 * - Owners: an owner's sessions are the ones whose keys it owns (see sessionKeyOf) and that exist:
 *   deleting one, or its expiry, frees its place at once for BeginOptions.maxSessions.
 * - Retention: appends touch their session, as do `begin` and the checkpoint that starts a draft
 *   (reads do not; nor do later checkpoints, the draft being seconds old; the final message that
 *   replaces a draft may or may not: its turn touched the session when it began). `expireIdle(cutoff)`
 *   deletes every session last touched before `cutoff` (in the store's clock, epoch ms).
 * - Errors: methods reject with SluiceError('unavailable') when the backing service cannot be
 *   reached or refuses the write (disk full, say), and after `close`.
 */
export interface History {
  /** The session's messages (per `options`), oldest first; empty for an unknown session. */
  read(sessionKey: string, options?: ReadOptions): Promise<HistoryMessage[]>;
  /** Stores `message` (its own `seq`, if any, is ignored); resolves with the position it got. */
  append(sessionKey: string, message: ChatMessage, options: AppendOptions): Promise<number>;
  /**
   * A turn begins: stores the user's `message` and, right after it, the empty draft of the reply
   * `replyId`, as `append` then `checkpoint(replyId, '')` would (one write where the store can;
   * a turn's start is on every reply's path). Resolves with the message's position. With
   * `maxSessions`, a turn in a new session is refused when its owner holds that many: decided
   * atomically with the session's creation, so that turns starting new sessions together (on
   * several instances, for a shared store) cannot all get in past the limit.
   */
  begin(sessionKey: string, message: ChatMessage, options: BeginOptions): Promise<number>;
  /** Saves the running reply `replyId`'s text so far as its draft (see the contract above). */
  checkpoint(sessionKey: string, replyId: string, text: string): Promise<void>;
  /** Deletes the session and its messages; false when there was none. */
  deleteSession(sessionKey: string): Promise<boolean>;
  /** Deletes the sessions last touched before `cutoff` (epoch ms); resolves with how many. */
  expireIdle(cutoff: number): Promise<number>;
  /** True when the backing service answers (readiness). */
  healthy(): Promise<boolean>;
  /** Finishes the writes already called for, then releases the store. Idempotent. */
  close(): Promise<void>;
}

/** Positions fit PostgreSQL's `integer`; `before` beyond them means "no cursor". */
export const MAX_SEQ = 2_147_483_647;

/** Checks a read's options (a caller's bug, not a client's: the transports bound what clients send). */
export function checkReadOptions(options: ReadOptions | undefined): { limit: number; before: number } {
  const limit = options?.limit ?? MAX_SEQ;
  const before = Math.min(options?.before ?? MAX_SEQ, MAX_SEQ);
  if (!Number.isInteger(limit) || limit < 1) throw new RangeError(`History.read: limit must be a positive integer, got ${limit}`);
  if (!Number.isInteger(before) || before < 1) throw new RangeError(`History.read: before must be a positive integer, got ${before}`);
  return { limit, before };
}

export function checkKeepLast(keepLast: number): number {
  if (!Number.isInteger(keepLast) || keepLast < 1) throw new RangeError(`History.append: keepLast must be a positive integer, got ${keepLast}`);
  return keepLast;
}
