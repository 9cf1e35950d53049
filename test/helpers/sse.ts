import { request, type ClientRequest } from 'node:http';
import { expect, vi } from 'vitest';
import { SessionHistory } from '../../shared/index.ts';

export interface SseFrame {
  readonly event: string | undefined;
  readonly data: string;
  readonly id: string | undefined;
}

/** Parses SSE text into frames (any line end, comments skipped), as the SSE standard says. */
export function parseSse(text: string): SseFrame[] {
  const frames: SseFrame[] = [];
  for (const block of text.split(/\r\n\r\n|\n\n|\r\r/)) {
    let event: string | undefined;
    let id: string | undefined;
    const data: string[] = [];
    for (const line of block.split(/\r\n|\n|\r/)) {
      if (line === '' || line.startsWith(':')) continue;
      const colon = line.indexOf(':');
      const field = colon === -1 ? line : line.slice(0, colon);
      let value = colon === -1 ? '' : line.slice(colon + 1);
      if (value.startsWith(' ')) value = value.slice(1);
      if (field === 'event') event = value;
      else if (field === 'data') data.push(value);
      else if (field === 'id') id = value;
    }
    if (data.length > 0) frames.push({ event, data: data.join('\n'), id });
  }
  return frames;
}

export interface RawResponse {
  readonly status: number;
  /** Header lines exactly as received, in order. */
  readonly rawHeaders: readonly string[];
  readonly headers: Record<string, string | string[] | undefined>;
  readonly body: Buffer;
}

/** A raw HTTP request (node:http), keeping the body's exact bytes. */
export function rawRequest(url: string, options: { method?: string; headers?: Record<string, string>; body?: string | Buffer } = {}): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method: options.method ?? 'POST', headers: options.headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, rawHeaders: res.rawHeaders, headers: res.headers, body: Buffer.concat(chunks) }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(options.body);
  });
}

/** POSTs to the documented route and yields frames as they arrive; stops reading when the loop breaks. */
export async function* streamSseRoute(
  baseUrl: string,
  body: unknown,
  options: { headers?: Record<string, string>; signal?: AbortSignal } = {},
): AsyncGenerator<SseFrame> {
  const controller = new AbortController();
  options.signal?.addEventListener('abort', () => controller.abort(), { once: true });
  const res = await fetch(`${baseUrl}/v1/chat/stream`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...options.headers },
    body: JSON.stringify(body),
    signal: controller.signal,
  });
  if (res.status !== 200) throw new Error(`status ${res.status}: ${await res.text()}`);
  const decoder = new TextDecoder();
  let buffer = '';
  try {
    for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
      buffer += decoder.decode(chunk, { stream: true });
      let end: number;
      while ((end = buffer.indexOf('\r\n\r\n')) !== -1) {
        const block = buffer.slice(0, end + 4);
        buffer = buffer.slice(end + 4);
        yield* parseSse(block);
      }
    }
  } finally {
    controller.abort();
  }
}

/** A stream of the SSE route read frame by frame, as `openSseRoute` gives it. */
export interface OpenSseRoute {
  /** Settles with the response's status once the stream is over (0: no response). */
  readonly done: Promise<number>;
  /** Drops the connection at once, as a network failure would. */
  cut(): void;
}

/**
 * One POST to the SSE route, each frame handed to `onFrame` as it arrives. No keep-alive agent: its
 * idle sockets and their timers would outlive a test that counts them.
 */
export function openSseRoute(baseUrl: string, body: unknown, headers: Record<string, string>, onFrame: (frame: SseFrame) => void): OpenSseRoute {
  let req: ClientRequest;
  const done = new Promise<number>((resolve) => {
    req = request(`${baseUrl}/v1/chat/stream`, { method: 'POST', agent: false, headers: { 'content-type': 'application/json', ...headers } }, (res) => {
      let buffer = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        buffer += chunk;
        let end: number;
        while ((end = buffer.indexOf('\r\n\r\n')) !== -1) {
          for (const frame of parseSse(buffer.slice(0, end + 4))) onFrame(frame);
          buffer = buffer.slice(end + 4);
        }
      });
      res.on('end', () => resolve(res.statusCode ?? 0));
      res.on('error', () => resolve(res.statusCode ?? 0));
      res.on('close', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', () => resolve(0));
    req.end(JSON.stringify(body));
  });
  return { done, cut: () => req.destroy() };
}

/**
 * Resolves once `GET /ready` answers 200 (the store answers again: what a client told to retry a
 * 503 waits for), or rejects after `timeoutMs`. No keep-alive agent, as above.
 */
export async function untilReady(baseUrl: string, timeoutMs: number): Promise<void> {
  const status = (): Promise<number> =>
    new Promise((resolve) => {
      const req = request(`${baseUrl}/ready`, { agent: false }, (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      });
      req.on('error', () => resolve(0));
      req.end();
    });
  await vi.waitFor(async () => expect(await status()).toBe(200), { timeout: timeoutMs, interval: 50 });
}

/** Every frame of a stream, once it is over. */
export async function drain(frames: AsyncIterable<SseFrame>): Promise<SseFrame[]> {
  const out: SseFrame[] = [];
  for await (const frame of frames) out.push(frame);
  return out;
}

/** A session's history, as the REST route gives it (no credential). */
export const history = async (url: string, session: string): Promise<SessionHistory> =>
  SessionHistory.parse(await (await fetch(`${url}/v1/sessions/${session}/messages`)).json());

/** `POST /v1/chat/cancel` for a session (no credential): whether a running reply was cancelled. */
export const cancel = async (url: string, session: string): Promise<boolean> =>
  (
    (await (
      await fetch(`${url}/v1/chat/cancel`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ session_id: session }) })
    ).json()) as { cancelled: boolean }
  ).cancelled;
