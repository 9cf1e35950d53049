import type { ChatMessage } from '../../shared/messages.ts';
import { formatEventId, type StreamEvent } from '../../shared/stream-events.ts';
import { DONE, type Listener, type TrackedEvent } from './generation.ts';

/**
 * A completed reply read back from history, as a listener of its events: its text in one delta,
 * then `done` with its usage. A turn sent again after its answer was lost on the way back (an SDK's
 * retry) is answered with the reply it already has, instead of running, storing and billing it
 * twice. The ids name a generation no log holds: there is nothing to resume.
 */
export function storedReplyListener(generationId: string, reply: ChatMessage, maxTokens: number | undefined): Listener {
  // History keeps no finish reason: a reply that used all the tokens the request allows ended for
  // its length (the same request, sent again, allows as many).
  const cut = maxTokens !== undefined && reply.usage !== undefined && reply.usage.completionTokens >= maxTokens;
  const done: StreamEvent = {
    type: 'done',
    totalChunks: reply.content ? 1 : 0,
    ...(reply.usage ? { usage: reply.usage } : {}),
    ...(cut ? { finishReason: 'length' as const } : {}),
  };
  const events: StreamEvent[] = reply.content ? [{ type: 'delta', delta: reply.content, index: 1 }, done] : [done];
  const tracked: TrackedEvent[] = events.map((event, i) => ({ id: formatEventId(generationId, i + 1), seq: i + 1, event }));
  let next = 0;
  const take = (): TrackedEvent | undefined => (next < tracked.length ? tracked[next++] : undefined);
  const listener: Listener = {
    next: () => {
      const event = take();
      return Promise.resolve(event ? { done: false, value: event } : DONE);
    },
    return: () => {
      next = tracked.length;
      return Promise.resolve(DONE);
    },
    close: () => {
      next = tracked.length;
    },
    poll: take,
    // Never called while an event waits (poll takes them all): the end is all there is to tell.
    onReady: (wake) => queueMicrotask(() => wake()),
    get over() {
      return next >= tracked.length;
    },
    [Symbol.asyncIterator]: () => listener,
  };
  return listener;
}
