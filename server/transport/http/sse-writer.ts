import { once } from 'node:events';
import type { ServerResponse } from 'node:http';

/**
 * Writes to a streaming response while respecting its write buffer: when `write` says the buffer
 * is full, the caller waits for `drain` (or the end of the connection) before writing more.
 */
export async function writeRespectingBuffer(res: ServerResponse, chunk: string, signal: AbortSignal): Promise<void> {
  if (res.write(chunk) || signal.aborted) return;
  await once(res, 'drain', { signal }).catch(() => undefined);
}
