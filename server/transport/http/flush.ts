import type { ServerResponse } from 'node:http';

/**
 * Sends what the response has written so far now. Node holds a response's writes until the next
 * tick to send them together, and a stream's first burst of tokens is one long run of microtasks,
 * so without this the first event would wait for the whole burst: streams call it after their
 * first event (time to first token is what a reader notices) and let later ones coalesce.
 */
export function flushNow(res: ServerResponse): void {
  res.socket?.uncork();
}
