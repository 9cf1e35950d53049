import WebSocket from 'ws';
import { once } from 'node:events';
import { request } from 'node:http';
import { describe, expect, it, vi } from 'vitest';
import { createSimulatedProvider } from '../server/core/providers/simulated.ts';
import { SessionHistory } from '../shared/index.ts';
import { recordingProvider } from './helpers/recording-provider.ts';
import { startServer } from './helpers/server.ts';
import { collectStream, stockClient } from './helpers/trpc-clients.ts';

/** Reads a streaming response until `enough(text)`, then drops the connection. */
function readUntil(url: string, init: { method: string; headers?: Record<string, string>; body?: string }, enough: (text: string) => boolean): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method: init.method, headers: init.headers }, (res) => {
      let text = '';
      res.on('data', (chunk: Buffer) => {
        text += chunk.toString();
        if (enough(text)) {
          req.destroy();
          resolve(text);
        }
      });
      res.on('error', () => undefined);
      res.on('end', () => resolve(text));
    });
    req.on('error', reject);
    req.end(init.body);
  });
}

describe('keep-alives', () => {
  it('a quiet stream on the SSE route receives comment pings between events', async () => {
    const { url } = await startServer({ SIM_DELAY_MS: 400, SSE_PING_MS: 100 });
    const text = await readUntil(
      `${url}/v1/chat/stream`,
      { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ message: 'quiet' }) },
      (t) => (t.match(/^: ping - /gm) ?? []).length >= 3,
    );
    expect(text).toMatch(/^: ping - \d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}\+00:00\r\n\r\n/m);
  });

  it('a quiet stream on the OpenAI route receives comment pings between its chunks', async () => {
    const { url } = await startServer({ SIM_DELAY_MS: 400, SSE_PING_MS: 100 });
    const text = await readUntil(
      `${url}/v1/chat/completions`,
      {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'sluice', stream: true, messages: [{ role: 'user', content: 'quiet' }] }),
      },
      (t) => (t.match(/^: ping\n\n/gm) ?? []).length >= 3,
    );
    // Between whole chunks: the role chunk and the first delta came first, in one piece.
    expect(text).toMatch(/^data: \{[^\n]*"role":"assistant"[^\n]*\}\n\ndata: \{[^\n]*"content":"[^"]+"[^\n]*\}\n\n(: ping\n\n)+/);
  });

  it('tRPC over SSE uses its ping events', async () => {
    const { url } = await startServer({ SIM_DELAY_MS: 400, SSE_PING_MS: 100 });
    const input = encodeURIComponent(JSON.stringify({ json: { message: 'quiet', sessionId: 'p' } }));
    const text = await readUntil(`${url}/trpc/chat.stream?input=${input}`, { method: 'GET' }, (t) => (t.match(/event: ping/g) ?? []).length >= 2);
    expect(text).toContain('event: connected');
    expect(text).toContain('event: ping');
  });

  it('tRPC over SSE sends `connected` (with the reconnect hint) and `start` at once, while a slow model has produced nothing', async () => {
    // 60 s before the first token: whatever arrives now was sent without waiting for it.
    const { url } = await startServer({ SIM_DELAY_MS: 60_000, SSE_PING_MS: 10_000 });
    const input = encodeURIComponent(JSON.stringify({ json: { message: 'slow', sessionId: 'c' } }));
    const text = await readUntil(`${url}/trpc/chat.stream?input=${input}`, { method: 'GET' }, (t) => t.split('\n\n').length > 2);
    expect(text).toMatch(
      /^event: connected\ndata: \{"reconnectAfterInactivityMs":25000\}\n\ndata: \{"json":\{"type":"start","replyId":"([0-9a-f]{32})"\}\}\nid: \1:0\n\n$/,
    );
  });

  it('a WebSocket peer that stops answering pings is terminated and its reply released', async () => {
    const recorder = recordingProvider(createSimulatedProvider({ delayMs: 50 }));
    const server = await startServer({ WS_PING_MS: 150, WS_PONG_WAIT_MS: 150, RESUME_GRACE_MS: 0 }, { provider: recorder.provider });
    // A raw client that subscribes and then goes silent: it never answers the server's PING.
    const ws = new WebSocket(`${server.url.replace('http', 'ws')}/trpc`);
    await once(ws, 'open');
    ws.send(JSON.stringify({ id: 1, method: 'subscription', params: { path: 'chat.stream', input: { json: { message: 'half open', sessionId: 'h' } } } }));
    const messages: string[] = [];
    ws.on('message', (data) => messages.push(String(data)));
    const [code] = await once(ws, 'close');
    expect(code).toBe(1006); // terminated, no close handshake
    expect(messages).toContain('PING');
    await vi.waitFor(() => expect(recorder.calls[0]?.settled).toBe(true));
    expect(recorder.calls[0]!.aborted).toBe(true);
    expect(server.sluice.service.runningCount).toBe(0);
    const history = SessionHistory.parse(await (await fetch(`${server.url}/v1/sessions/h/messages`)).json());
    expect(history.messages[1]).toMatchObject({ status: 'interrupted' });

    // A client that answers (the stock wsLink does) keeps its connection through many ping rounds.
    const { client } = stockClient(server.url, 'ws');
    const { events } = await collectStream(client, { message: 'alive', sessionId: 'a' });
    expect(events.at(-1)).toMatchObject({ type: 'done' });
  });
});
