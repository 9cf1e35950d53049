import type { StreamEvent } from '../../../shared/stream-events.ts';
import { pyJsonString } from './python-json.ts';

// Frames of the documented route (docs/sse-format.md), with sse-starlette's `\r\n` line
// ends and the `id:` line after `data:` for resume.

/** One stream event as the documented route's SSE frame. */
export function encodeSseFrame(event: StreamEvent, id: string): string {
  switch (event.type) {
    case 'delta':
      return `event: message\r\ndata: {"delta": ${pyJsonString(event.delta)}, "done": false, "chunk_index": ${event.index}}\r\nid: ${id}\r\n\r\n`;
    case 'done':
      return `event: message\r\ndata: {"delta": "", "done": true, "total_chunks": ${event.totalChunks}}\r\nid: ${id}\r\n\r\n`;
    case 'error':
      return `event: error\r\ndata: {"message": ${pyJsonString(event.message)}, "partial": ${pyJsonString(event.partial)}}\r\nid: ${id}\r\n\r\n`;
    case 'start':
      // The documented format has no such event: its clients get the reply's id from the
      // `X-Sluice-Reply-Id` response header instead.
      return '';
    default: {
      const unexpected: never = event;
      throw new TypeError(`unknown stream event ${JSON.stringify(unexpected)}`);
    }
  }
}

/** sse-starlette's keep-alive comment: `: ping - 2024-05-01 12:00:00.123000+00:00`. */
export function encodeSsePing(now: Date = new Date()): string {
  const iso = now.toISOString(); // 2024-05-01T12:00:00.123Z
  return `: ping - ${iso.slice(0, 10)} ${iso.slice(11, 23)}000+00:00\r\n\r\n`;
}

/** Headers of the documented route, as the reference sends them. */
export const SSE_HEADERS: Readonly<Record<string, string>> = {
  'Content-Type': 'text/event-stream',
  'Cache-Control': 'no-cache',
  Connection: 'keep-alive',
  'X-Accel-Buffering': 'no',
};

/** The same, for a client that sent `Connection: close` (Node then answers `Connection: close`). */
export const SSE_HEADERS_CLOSING: Readonly<Record<string, string>> = Object.fromEntries(Object.entries(SSE_HEADERS).filter(([name]) => name !== 'Connection'));
