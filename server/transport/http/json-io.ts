import { isUtf8 } from 'node:buffer';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { ZodType } from 'zod';
import type { ErrorBody } from '../../../shared/errors.ts';
import { SluiceError, toSluiceError } from '../../core/errors.ts';
import { parseWith } from '../parse-input.ts';
import { inviteBody } from './expect-continue.ts';
import { HTTP_STATUS, retryHeaders } from './status.ts';

const rejections = new WeakMap<ServerResponse, SluiceError>();

/** Notes why a request was refused, for metrics and the request log (which logs an `internal` one's cause). */
export function markRejected(res: ServerResponse, error: SluiceError): void {
  rejections.set(res, error);
}

/** Why a response refused its request, if it did. */
export function rejectionOf(res: ServerResponse): SluiceError | undefined {
  return rejections.get(res);
}

export function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'Content-Type': 'application/json; charset=utf-8',
    'Content-Length': Buffer.byteLength(text),
    'Cache-Control': 'no-store',
    ...headers,
  });
  res.end(text);
}

/** Answers any caught error as `{"error": {"code", "message"}}` with its status. */
export function sendError(res: ServerResponse, error: unknown): SluiceError {
  const sluice = toSluiceError(error);
  if (res.headersSent) {
    res.destroy();
    return sluice;
  }
  markRejected(res, sluice);
  const body: ErrorBody = { error: { code: sluice.code, message: sluice.message } };
  const headers = retryHeaders(sluice);
  sendJson(res, HTTP_STATUS[sluice.code], body, headers);
  return sluice;
}

function isJsonContentType(header: string | undefined): boolean {
  if (!header) return false;
  const type = header.split(';', 1)[0]!.trim().toLowerCase();
  return type === 'application/json' || (type.startsWith('application/') && type.endsWith('+json'));
}

/** Reads the whole body, refusing more than `maxBytes`. */
export async function readBody(req: IncomingMessage, maxBytes: number): Promise<Buffer> {
  const declared = req.headers['content-length'];
  if (declared !== undefined && Number(declared) > maxBytes) {
    throw new SluiceError('payload_too_large', `The request body must be at most ${maxBytes} bytes`);
  }
  inviteBody(req);
  if (declared !== undefined && req.readableLength === Number(declared)) {
    // A small body arrives with its headers, and the parser has buffered it before any handler
    // runs: take it now instead of over two more turns of the stream ('data', then 'end'). The
    // stream is resumed so that it still ends (nothing is left to read).
    const whole = req.readableLength === 0 ? Buffer.alloc(0) : (req.read(req.readableLength) as Buffer);
    req.resume();
    return whole;
  }
  // Events rather than `for await`: cheaper per request, and the request is drained either way.
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (chunk: Buffer): void => {
      size += chunk.length;
      if (size > maxBytes) {
        req.off('data', onData);
        req.resume();
        reject(new SluiceError('payload_too_large', `The request body must be at most ${maxBytes} bytes`));
        return;
      }
      chunks.push(chunk);
    };
    req.on('data', onData);
    req.once('end', () => resolve(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks)));
    req.once('error', reject);
    req.once('close', () => {
      if (!req.complete) reject(new SluiceError('invalid_request', 'The request body was cut short'));
    });
  });
}

/** Reads a JSON body and validates it, with an error naming the problem (415, 413, 400, 422). */
export async function readJsonBody<T>(req: IncomingMessage, schema: ZodType<T>, maxBytes: number): Promise<T> {
  const type = req.headers['content-type'];
  if (!isJsonContentType(type)) {
    throw new SluiceError('unsupported_media_type', 'Content-Type must be application/json');
  }
  // JSON is UTF-8 (RFC 8259 8.1), and a body is taken as sent: another charset or a content coding
  // would be read as something else than what the client meant (a message stored with U+FFFD).
  const charset = /;\s*charset\s*=\s*"?([^";\s]*)/i.exec(type!)?.[1];
  if (charset !== undefined && !/^utf-?8$/i.test(charset)) {
    throw new SluiceError('unsupported_media_type', `Content-Type's charset must be utf-8, got ${charset.slice(0, 40)}`);
  }
  const coding = req.headers['content-encoding'];
  if (coding !== undefined && coding.trim().toLowerCase() !== 'identity') {
    throw new SluiceError('unsupported_media_type', 'Content-Encoding is not accepted: send the body as it is');
  }
  const raw = await readBody(req, maxBytes);
  if (!isUtf8(raw)) throw new SluiceError('invalid_json', 'The request body is not valid JSON: it is not UTF-8');
  let value: unknown;
  try {
    value = JSON.parse(raw.toString('utf8'));
  } catch {
    throw new SluiceError('invalid_json', 'The request body is not valid JSON');
  }
  return parseWith(schema, value, 'body');
}
