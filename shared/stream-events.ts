import { z } from 'zod';
import { ErrorCode } from './errors.ts';
import { TokenUsage } from './messages.ts';

/** One token delta; `index` counts deltas from 1. */
export const DeltaEvent = z.object({
  type: z.literal('delta'),
  delta: z.string(),
  index: z.number().int().positive(),
});

/**
 * Why a completed reply ended, when it did not stop by itself: the token limit (`length`) or the
 * provider's content filter (`content_filter`).
 */
export const FinishReason = z.enum(['length', 'content_filter']);
export type FinishReason = z.infer<typeof FinishReason>;

/** The last event of a completed reply. */
export const DoneEvent = z.object({
  type: z.literal('done'),
  totalChunks: z.number().int().nonnegative(),
  usage: TokenUsage.optional(),
  /** Absent when the model stopped by itself. */
  finishReason: FinishReason.optional(),
});

/** A failure (or cancel) after the stream started; `partial` is the text produced so far. */
export const ErrorEvent = z.object({
  type: z.literal('error'),
  code: ErrorCode,
  message: z.string(),
  partial: z.string(),
  /** Seconds to wait before trying again, when the cause says so (an upstream's 429 `retry-after`). */
  retryAfterSeconds: z.number().nonnegative().optional(),
  /** What the reply consumed up to where it stopped (absent only for a reply whose instance died). */
  usage: TokenUsage.optional(),
});

/**
 * The first event of a reply a tRPC client started (tracked as `<replyId>:0`, and never stored in
 * the log): a client whose connection drops before the first token then reconnects with that id,
 * and gets the whole reply instead of finding its session busy with it. Other transports do not
 * send it.
 */
export const StartEvent = z.object({
  type: z.literal('start'),
  replyId: z.string(),
});

export const StreamEvent = z.discriminatedUnion('type', [StartEvent, DeltaEvent, DoneEvent, ErrorEvent]);
export type StreamEvent = z.infer<typeof StreamEvent>;
export type DeltaEvent = z.infer<typeof DeltaEvent>;
export type DoneEvent = z.infer<typeof DoneEvent>;
export type ErrorEvent = z.infer<typeof ErrorEvent>;
export type StartEvent = z.infer<typeof StartEvent>;
/** What a reply is made of: its deltas and its end (the stream's `start` is a protocol detail). */
export type ReplyEvent = Exclude<StreamEvent, StartEvent>;

/** True for the events after which a stream has nothing more to say. */
export function isTerminalEvent(event: StreamEvent): event is DoneEvent | ErrorEvent {
  return event.type === 'done' || event.type === 'error';
}

/**
 * Event ids name the generation and the position (`<generationId>:<seq>`), so an id alone says
 * where to resume.
 */
export const EventId = z.string().regex(/^[A-Za-z0-9_-]{1,64}:(0|[1-9][0-9]{0,9})$/, 'must look like "<generation>:<seq>"');

export function formatEventId(generationId: string, seq: number): string {
  return `${generationId}:${seq}`;
}

/** Where an event id points: a generation, and the position of an event in its log. */
export interface EventRef {
  readonly generationId: string;
  readonly seq: number;
}

export function parseEventId(id: string): EventRef | undefined {
  if (!EventId.safeParse(id).success) return undefined;
  const at = id.lastIndexOf(':');
  return { generationId: id.slice(0, at), seq: Number(id.slice(at + 1)) };
}
