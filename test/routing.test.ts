import { describe, expect, it } from 'vitest';
import { ErrorBody, OpenAIErrorBody } from '../shared/index.ts';
import { startServer } from './helpers/server.ts';
import { parseSse, rawRequest } from './helpers/sse.ts';

// Every route is in one table, matched after the path is normalized: a path spelled another way
// reaches the same handler, never a second one behind it (tRPC's own SSE producer, say).

const input = (session: string): string => encodeURIComponent(JSON.stringify({ json: { message: 'hi', sessionId: session } }));
const headerNames = (rawHeaders: readonly string[]): string[] => rawHeaders.filter((_, i) => i % 2 === 0 && rawHeaders[i] !== 'Date');

describe('routing', () => {
  it('every spelling of /trpc/chat.stream is served by Sluice own SSE producer', async () => {
    const { url } = await startServer();
    const canonical = await rawRequest(`${url}/trpc/chat.stream?input=${input('r0')}`, { method: 'GET' });
    expect(canonical.status).toBe(200);
    const events = (body: Buffer) => parseSse(body.toString()).map((f) => f.event ?? JSON.parse(f.data).json?.type);
    let n = 1;
    for (const path of [
      '/trpc/chat.stream/',
      '/trpc/chat%2Estream',
      '/trpc/%63hat.stream',
      '/trpc//chat.stream',
      '/trpc/x/../chat.stream',
      '/trpc/./chat.stream',
    ]) {
      const res = await rawRequest(`${url}${path}?input=${input(`r${n++}`)}`, { method: 'GET' });
      expect(res.status, path).toBe(200);
      // Sluice's producer writes its own header lines (tRPC's writes them lower-cased).
      expect(headerNames(res.rawHeaders), path).toEqual(headerNames(canonical.rawHeaders));
      expect(events(res.body), path).toEqual(events(canonical.body));
    }
  });

  it("Sluice's own routes, /metrics and /ready are found whatever the spelling; a bad escape names nothing", async () => {
    const { url } = await startServer();
    expect((await fetch(`${url}/health/`)).status).toBe(200);
    expect((await fetch(`${url}/metrics/`)).status).toBe(200);
    expect((await fetch(`${url}/%72eady`)).status).toBe(200);
    expect((await fetch(`${url}/v1//sessions/s1/messages`)).status).toBe(200);
    const chat = await fetch(`${url}/v1/chat/stream/`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{"message":"hi","session_id":"r9"}',
    });
    expect(chat.status).toBe(200);
    await chat.text();

    const bad = await rawRequest(`${url}/v1/sessions/%zz/messages`, { method: 'GET' });
    expect(bad.status).toBe(404);
    expect(ErrorBody.parse(JSON.parse(bad.body.toString())).error.code).toBe('not_found');
    const missing = await fetch(`${url}/v2/nothing`);
    expect(missing.status).toBe(404);
    expect(ErrorBody.parse(await missing.json()).error).toEqual({ code: 'not_found', message: 'No route for GET /v2/nothing' });
  });

  it("a method a route does not serve is answered in the route's own error shape (OpenAI's on the OpenAI routes)", async () => {
    const { url } = await startServer();
    const openai = await fetch(`${url}/v1/chat/completions`);
    expect(openai.status).toBe(404);
    expect(OpenAIErrorBody.parse(await openai.json()).error).toMatchObject({ code: 'not_found', message: 'GET is not supported on /v1/chat/completions' });
    const own = await fetch(`${url}/v1/chat/stream`);
    expect(ErrorBody.parse(await own.json()).error).toEqual({ code: 'not_found', message: 'GET is not supported on /v1/chat/stream' });
    // Under /trpc, tRPC's own answer, as its stock server gives it (the subscription's GET is
    // served by Sluice's producer, every other method by tRPC's handler).
    const post = await fetch(`${url}/trpc/chat.stream`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
    expect(post.headers.get('allow')).toBe('GET');
    const error = parseSse(await post.text()).find((frame) => frame.event === 'serialized-error');
    expect((JSON.parse(error!.data) as { json: { data: { code: string; httpStatus: number } } }).json.data).toMatchObject({
      code: 'METHOD_NOT_SUPPORTED',
      httpStatus: 405,
    });
  });
});

describe('HEAD', () => {
  it('is served wherever GET is, with the GET headers and no body; never on a stream, which it would start', async () => {
    const server = await startServer();
    for (const path of ['/health', '/ready', '/metrics', '/', '/assets/app.js', '/v1/models', '/v1/sessions/s/messages']) {
      const get = await rawRequest(`${server.url}${path}`, { method: 'GET' });
      const head = await rawRequest(`${server.url}${path}`, { method: 'HEAD' });
      expect([path, head.status]).toEqual([path, get.status]);
      expect(head.headers['content-type']).toBe(get.headers['content-type']);
      expect(head.body.length).toBe(0);
    }
    // tRPC's routes too: its own handler would answer any HEAD 204, before the credential and the procedure.
    const history = `/trpc/chat.history?input=${encodeURIComponent(JSON.stringify({ json: { sessionId: 's' } }))}`;
    for (const path of ['/trpc/health', history]) {
      const get = await rawRequest(`${server.url}${path}`, { method: 'GET' });
      const head = await rawRequest(`${server.url}${path}`, { method: 'HEAD' });
      expect([path, head.status, head.headers['content-type']]).toEqual([path, get.status, get.headers['content-type']]);
    }
    const keyed = await startServer({ API_KEYS: 'k'.repeat(24) });
    expect((await rawRequest(`${keyed.url}${history}`, { method: 'HEAD' })).status).toBe(401);
    const stream = await rawRequest(`${server.url}/v1/ui/chat/s/stream`, { method: 'HEAD' });
    expect(stream.status).toBe(404);
    // tRPC's subscription: neither Sluice's producer nor tRPC's handler behind it (which would
    // start the reply: a link preview's or a monitor's HEAD spending tokens and adding a turn).
    const subscription = `/trpc/chat.stream?input=${encodeURIComponent(JSON.stringify({ json: { message: 'hi', sessionId: 'head' } }))}`;
    expect((await rawRequest(`${server.url}${subscription}`, { method: 'HEAD' })).status).toBe(404);
    expect(server.sluice.service.runningCount).toBe(0);
    expect((await (await fetch(`${server.url}/v1/sessions/head/messages`)).json()).messages).toEqual([]);
  });
});
