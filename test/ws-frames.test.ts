import { EventEmitter } from 'node:events';
import * as wsModule from 'ws';
import { describe, expect, it } from 'vitest';
import { TextFrames } from '../server/transport/trpc/ws-frames.ts';

// Sluice writes a stream's WebSocket frames itself (one socket write a batch): held here to the
// bytes ws's own sender frames for the same messages, and read back by ws's own receiver.

// ws's framing classes, which its type declarations leave out.
const { Sender, Receiver } = wsModule as unknown as {
  Sender: { frame(data: Buffer, options: Record<string, unknown>): Array<Buffer | string> };
  Receiver: new (options: Record<string, unknown>) => EventEmitter & { write(chunk: Buffer, callback: (error?: Error | null) => void): void };
};

const PAYLOADS = ['', 'x', 'é€𝄞 multibyte', 'a'.repeat(125), 'b'.repeat(126), 'ü'.repeat(63), 'c'.repeat(65_535), 'd'.repeat(65_536), 'e'.repeat(200_000)];

function wsFrame(payload: string): Buffer {
  const parts = Sender.frame(Buffer.from(payload), { fin: true, opcode: 1, mask: false, readOnly: false, rsv1: false });
  return Buffer.concat(parts.map((part) => (typeof part === 'string' ? Buffer.from(part) : part)));
}

describe('WebSocket text frames written by Sluice', () => {
  it("are byte for byte ws's, for every payload length class (7-bit, 16-bit, 64-bit) and multibyte text", () => {
    const frames = new TextFrames();
    for (const payload of PAYLOADS) frames.add(payload);
    const expected = Buffer.concat(PAYLOADS.map(wsFrame));
    expect(frames.bytes).toBe(expected.length);
    expect(frames.take().equals(expected)).toBe(true);
    // Taken: the holder starts again empty.
    expect([frames.bytes, frames.take().length]).toEqual([0, 0]);
  });

  it("read back by ws's receiver as the same messages, in order", async () => {
    const frames = new TextFrames();
    for (const payload of PAYLOADS) frames.add(payload);
    const receiver = new Receiver({ isServer: false, maxPayload: 0 });
    const messages: string[] = [];
    receiver.on('message', (data: Buffer, isBinary: boolean) => messages.push(`${isBinary ? 'binary:' : ''}${data.toString()}`));
    await new Promise<void>((resolve, reject) => receiver.write(frames.take(), (error?: Error | null) => (error ? reject(error) : resolve())));
    expect(messages).toEqual(PAYLOADS);
  });
});
