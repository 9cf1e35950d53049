import type { Duplex } from 'node:stream';

/** How long a peer has to close its side once answered, before the connection is cut. */
export const LINGER_MS = 1_000;

/**
 * Writes an answer on a socket no HTTP response owns (a request refused by the parser, an upgrade
 * refused), ends our side, and cuts the connection if the peer has not closed its own within
 * LINGER_MS. The server is half-open, as Node's is: ending only our side would leave a peer that
 * never closes (a stock socket with `allowHalfOpen`) holding the connection, and its place in
 * MAX_CONNECTIONS, with no timer left to free it. The linger lets an honest peer read the answer
 * before the cut (a cut with its data unread could reset the connection before it reads).
 */
export function answerAndClose(socket: Duplex, answer: string): void {
  const cut = setTimeout(() => socket.destroy(), LINGER_MS);
  cut.unref();
  socket.once('close', () => clearTimeout(cut));
  socket.end(answer);
}
