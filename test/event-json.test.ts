import { describe, expect, it } from 'vitest';
import { StreamEvent } from '../shared/stream-events.ts';
import { eventJson } from '../server/transport/event-json.ts';

describe('eventJson', () => {
  const events: StreamEvent[] = [
    { type: 'start', replyId: 'g1' },
    { type: 'delta', delta: 'Hello ', index: 1 },
    { type: 'delta', delta: 'quote " backslash \\ newline \n tab \t nul \u0000 é 😀 \ud800', index: 2 },
    { type: 'delta', delta: '</script>', index: 123_456 },
    { type: 'done', totalChunks: 39 },
    { type: 'done', totalChunks: 2, usage: { promptTokens: 3, completionTokens: 2, estimated: true } },
    { type: 'error', code: 'cancelled', message: 'Cancelled', partial: 'Hel' },
  ];

  it('writes what JSON.stringify writes, for every kind of event', () => {
    for (const event of events) {
      expect(StreamEvent.parse(event)).toEqual(event);
      expect(eventJson(event)).toBe(JSON.stringify(event));
    }
  });

  it('writes a delta received from another instance (parsed from its JSON) the same way', () => {
    const remote = JSON.parse(JSON.stringify(events[2])) as StreamEvent;
    expect(eventJson(remote)).toBe(JSON.stringify(events[2]));
  });
});
