import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { connect, type Socket } from 'node:net';
import { afterEach } from 'vitest';

export interface RawWebSocket {
  readonly socket: Socket;
  /** Sends one masked text frame, as every client must. */
  send(text: string): void;
  /** Resolves once the server has closed the connection (or it was reset). */
  readonly closed: Promise<void>;
}

const open = new Set<Socket>();
afterEach(() => {
  for (const socket of open) socket.destroy();
  open.clear();
});

/**
 * A WebSocket client written on a bare TCP socket: it completes the handshake, then reads nothing
 * more (unless `read` is set), as a hostile or stuck client does. What the server sends piles up in
 * the kernel's buffers and then in the server's.
 */
export async function rawWebSocket(baseUrl: string, path = '/trpc', options: { read?: boolean } = {}): Promise<RawWebSocket> {
  const { hostname, port } = new URL(baseUrl);
  const socket = connect(Number(port), hostname);
  open.add(socket);
  socket.on('error', () => undefined);
  // Not events.once: it rejects on the socket's 'error' (a reset while it still writes), a
  // rejection nobody may be waiting for.
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  await once(socket, 'connect');
  socket.write(
    `GET ${path} HTTP/1.1\r\nHost: ${hostname}:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
      `Sec-WebSocket-Key: ${randomBytes(16).toString('base64')}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
  );
  let head = '';
  await new Promise<void>((resolve, reject) => {
    const onData = (chunk: Buffer): void => {
      head += chunk.toString('latin1');
      const end = head.indexOf('\r\n\r\n');
      if (end === -1) return;
      socket.off('data', onData);
      socket.off('close', onClose);
      if (!head.startsWith('HTTP/1.1 101')) reject(new Error(`no upgrade: ${head.slice(0, end)}`));
      else resolve();
    };
    const onClose = (): void => reject(new Error(`closed during the handshake: ${head}`));
    socket.on('data', onData);
    socket.once('close', onClose);
  });
  if (options.read) socket.resume();
  else socket.pause();
  return { socket, send: (text) => socket.write(frame(text)), closed };
}

function frame(text: string): Buffer {
  const payload = Buffer.from(text, 'utf8');
  const length = payload.length;
  const header = length < 126 ? Buffer.alloc(2) : length < 65536 ? Buffer.alloc(4) : Buffer.alloc(10);
  header[0] = 0x81; // FIN, text
  if (length < 126) header[1] = 0x80 | length;
  else if (length < 65536) {
    header[1] = 0x80 | 126;
    header.writeUInt16BE(length, 2);
  } else {
    header[1] = 0x80 | 127;
    header.writeBigUInt64BE(BigInt(length), 2);
  }
  const mask = randomBytes(4);
  for (let i = 0; i < length; i++) payload[i]! ^= mask[i & 3]!;
  return Buffer.concat([header, mask, payload]);
}
