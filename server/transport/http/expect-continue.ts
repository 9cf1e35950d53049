import type { IncomingMessage, ServerResponse } from 'node:http';

// `Expect: 100-continue`: the client waits to be invited before it sends its body. Node would
// invite every such request at once; Sluice invites one only once the request's headers have
// passed what can refuse it without the body (its credential, its type, its declared size), so
// that a refused client is spared the upload (RFC 9110 10.1.1).

const waiting = new WeakMap<IncomingMessage, ServerResponse>();

/** The request asked to be invited (node:http's 'checkContinue'). */
export function awaitsInvitation(req: IncomingMessage, res: ServerResponse): void {
  waiting.set(req, res);
}

/** Sends `100 Continue` to a request that waits for it, once: its body is about to be read. */
export function inviteBody(req: IncomingMessage): void {
  const res = waiting.get(req);
  if (!res) return;
  waiting.delete(req);
  if (!res.headersSent) res.writeContinue();
}
