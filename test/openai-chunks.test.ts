import { describe, expect, it } from 'vitest';
import { CompletionChunkReader, MAX_EVENT_CHARS } from '../server/core/providers/openai-chunks.ts';
import { UpstreamStreamFault } from '../server/core/providers/upstream-errors.ts';

// The reader of a streamed completion's body, fed text as the network splits it.

const chunk = (content: string | undefined, finish: string | null = null): string =>
  `data: ${JSON.stringify({ id: 'c', object: 'chat.completion.chunk', choices: [{ index: 0, delta: content === undefined ? {} : { content }, finish_reason: finish }] })}\n\n`;

function faultOf(reader: CompletionChunkReader): UpstreamStreamFault | undefined {
  try {
    reader.check();
    return undefined;
  } catch (error) {
    return error as UpstreamStreamFault;
  }
}

describe('the completion chunk reader', () => {
  it('reads deltas however the body is split, up to [DONE], and nothing after it', () => {
    const body = chunk('Hel') + chunk('lo, wörld') + chunk(undefined, 'stop') + 'data: [DONE]\n\n' + chunk('after');
    for (const size of [1, 3, 7, body.length]) {
      const reader = new CompletionChunkReader(() => undefined);
      const deltas: string[] = [];
      for (let i = 0; i < body.length; i += size) deltas.push(...reader.feed(body.slice(i, i + size)));
      expect(deltas, `pieces of ${size}`).toEqual(['Hel', 'lo, wörld']);
      expect(reader.finished).toBe(true);
      expect(faultOf(reader)).toBeUndefined();
    }
  });

  it('returns the deltas before a fault in the same read, then reports the fault', () => {
    const reader = new CompletionChunkReader(() => undefined);
    expect(reader.feed(chunk('a') + chunk('b') + 'data: {not json\n\n' + chunk('c'))).toEqual(['a', 'b']);
    expect(faultOf(reader)).toMatchObject({ fault: 'malformed' });
    expect(reader.feed(chunk('d'))).toEqual([]);
  });

  it('names an error chunk, and an SSE error event, as such', () => {
    const inData = new CompletionChunkReader(() => undefined);
    inData.feed(chunk('a') + 'data: {"error": {"message": "overloaded"}}\n\n');
    expect(faultOf(inData)).toMatchObject({ fault: 'error_chunk' });
    const asEvent = new CompletionChunkReader(() => undefined);
    asEvent.feed('event: error\ndata: {"message": "overloaded"}\n\n');
    expect(faultOf(asEvent)).toMatchObject({ fault: 'error_chunk' });
  });

  it('does not buffer an endless event: past MAX_EVENT_CHARS it is malformed', () => {
    const reader = new CompletionChunkReader(() => undefined);
    const piece = 'x'.repeat(64 * 1024);
    reader.feed('data: "');
    for (let sent = 0; sent <= MAX_EVENT_CHARS && faultOf(reader) === undefined; sent += piece.length) reader.feed(piece);
    expect(faultOf(reader)).toMatchObject({ fault: 'malformed' });
  });

  it('reports usage and signs of life per chunk', () => {
    let chunks = 0;
    let usage;
    const reader = new CompletionChunkReader(
      () => chunks++,
      (u) => (usage = u),
    );
    reader.feed(chunk('a') + 'data: {"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 1}}\n\n');
    expect(chunks).toBe(2);
    expect(usage).toEqual({ promptTokens: 3, completionTokens: 1 });
  });
});
