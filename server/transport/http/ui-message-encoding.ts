import type { MessageStatus, TokenUsage } from '../../../shared/messages.ts';
import type { FinishReason, StreamEvent } from '../../../shared/stream-events.ts';
import type { UIChatChunk, UIChatMetadata, UIChatUsage } from '../../../shared/ui-chat.ts';

// The wire of the AI SDK's UI message stream protocol (v1): one JSON chunk per `data:` line, then
// `data: [DONE]`. A reply is one text part; a delta costs one JSON.stringify of its text.

/** The response headers the AI SDK's own servers send (`x-vercel-ai-ui-message-stream` names the protocol). */
export const UI_STREAM_HEADERS: Readonly<Record<string, string>> = {
  'Content-Type': 'text/event-stream',
  'Cache-Control': 'no-cache',
  'X-Accel-Buffering': 'no',
  'x-vercel-ai-ui-message-stream': 'v1',
};

export const UI_DONE_LINE = 'data: [DONE]\n\n';
/** An SSE comment: the AI SDK's parser skips it, proxies see traffic on a quiet stream. */
export const UI_PING = (): string => ': ping\n\n';

/** The one text part of a reply. */
const TEXT_ID = '0';
const TEXT_START = `data: {"type":"text-start","id":"${TEXT_ID}"}\n\n`;
const DELTA_HEAD = `data: {"type":"text-delta","id":"${TEXT_ID}","delta":`;
const TEXT_END = `data: {"type":"text-end","id":"${TEXT_ID}"}\n\n`;

function line(chunk: UIChatChunk): string {
  return `data: ${JSON.stringify(chunk)}\n\n`;
}

/** The stream's first chunk. The message id is the reply's generation id, the same on a resume. */
export function startLine(generationId: string): string {
  return line({ type: 'start', messageId: generationId });
}

export function toUIUsage(usage: TokenUsage): UIChatUsage {
  const ui: UIChatUsage = { inputTokens: usage.promptTokens, outputTokens: usage.completionTokens, totalTokens: usage.promptTokens + usage.completionTokens };
  if (usage.estimated) ui.estimated = true;
  return ui;
}

function metadata(status: MessageStatus, usage: TokenUsage | undefined): UIChatMetadata {
  return usage ? { status, usage: toUIUsage(usage) } : { status };
}

/** The AI SDK's names for why a reply finished. */
const UI_FINISH: Readonly<Record<FinishReason | 'stop', 'stop' | 'length' | 'content-filter'>> = {
  stop: 'stop',
  length: 'length',
  content_filter: 'content-filter',
};

/**
 * One stream event as UI message chunks. The text part opens with the first delta and closes
 * before the ending; every reply ends with a `finish` chunk whose metadata holds its status and
 * usage, preceded by `abort` for a reply that was stopped and by `error` for one that failed (the
 * AI SDK's order: `useChat` turns `error` into its error state and reads no further).
 */
export function encodeUIChunk(event: StreamEvent): string {
  switch (event.type) {
    case 'delta': {
      const delta = `${DELTA_HEAD}${JSON.stringify(event.delta)}}\n\n`;
      return event.index === 1 ? TEXT_START + delta : delta;
    }
    case 'done':
      // Deltas are never empty, so a reply with text had its text part opened.
      return (
        (event.totalChunks > 0 ? TEXT_END : '') +
        line({ type: 'finish', finishReason: UI_FINISH[event.finishReason ?? 'stop'], messageMetadata: metadata('complete', event.usage) })
      );
    case 'error': {
      const end = event.partial.length > 0 ? TEXT_END : '';
      if (event.code === 'cancelled' || event.code === 'interrupted') {
        return (
          end +
          line({ type: 'abort', reason: event.code }) +
          line({ type: 'finish', finishReason: 'other', messageMetadata: metadata('interrupted', event.usage) })
        );
      }
      return (
        end +
        line({ type: 'error', errorText: event.message }) +
        line({ type: 'finish', finishReason: 'error', messageMetadata: metadata('failed', event.usage) })
      );
    }
    case 'start':
      // The UI stream has its own `start` part, written when the stream opens.
      return '';
    default: {
      const unexpected: never = event;
      throw new TypeError(`unknown stream event ${JSON.stringify(unexpected)}`);
    }
  }
}
