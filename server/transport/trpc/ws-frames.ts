/**
 * Unmasked, uncompressed WebSocket text frames (RFC 6455 §5.2), as a server sends them, several
 * in one buffer: a stream's batch of events leaves in one socket write instead of two writes
 * (header, payload) an event through `ws`'s sender. Only for connections without permessage-deflate
 * (the server turns it off), where `ws` itself writes every frame straight to the socket, so that
 * whole frames from either never interleave.
 */
export class TextFrames {
  #payloads: string[] = [];
  #lengths: number[] = [];
  #bytes = 0;

  /** Bytes the frames held so far take on the wire. */
  get bytes(): number {
    return this.#bytes;
  }

  add(payload: string): void {
    const length = Buffer.byteLength(payload);
    this.#payloads.push(payload);
    this.#lengths.push(length);
    this.#bytes += headerLength(length) + length;
  }

  /** The frames held, in order, as one buffer; the holder is empty again. */
  take(): Buffer {
    const out = Buffer.allocUnsafe(this.#bytes);
    let offset = 0;
    for (let i = 0; i < this.#payloads.length; i++) {
      offset = writeHeader(out, offset, this.#lengths[i]!);
      offset += out.write(this.#payloads[i]!, offset, 'utf8');
    }
    this.#payloads = [];
    this.#lengths = [];
    this.#bytes = 0;
    return out;
  }
}

const FIN_TEXT = 0x81;

function headerLength(length: number): number {
  return length < 126 ? 2 : length < 65_536 ? 4 : 10;
}

function writeHeader(out: Buffer, offset: number, length: number): number {
  out[offset] = FIN_TEXT;
  if (length < 126) {
    out[offset + 1] = length;
    return offset + 2;
  }
  if (length < 65_536) {
    out[offset + 1] = 126;
    out.writeUInt16BE(length, offset + 2);
    return offset + 4;
  }
  out[offset + 1] = 127;
  // Lengths past 2^53 cannot occur (a string is shorter): the high word is what is left above 32 bits.
  out.writeUInt32BE(Math.floor(length / 2 ** 32), offset + 2);
  out.writeUInt32BE(length >>> 0, offset + 6);
  return offset + 10;
}
