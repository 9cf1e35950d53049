import OpenAI, { APIError, BadRequestError, ConflictError } from 'openai';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it, vi } from 'vitest';
import { SluiceError } from '../server/core/errors.ts';
import type { Provider } from '../server/core/providers/provider.ts';
import { SIMULATED_MODEL_ID } from '../server/core/providers/simulated.ts';
import { createSimulatedProvider, simulatedDeltas } from '../server/core/providers/simulated.ts';
import { ChatCompletion, OpenAIModelList, SessionHistory } from '../shared/index.ts';
import { chunkText, postCompletion } from './helpers/openai-wire.ts';
import { freePort } from './helpers/ports.ts';
import { startSluiceProcess } from './helpers/process.ts';
import { recordingProvider } from './helpers/recording-provider.ts';
import { startServer } from './helpers/server.ts';
import { streamSseRoute } from './helpers/sse.ts';

/** The official SDK pointed at a Sluice; its own retries off, so that every failure shows. */
const sdk = (url: string, options: { defaultHeaders?: Record<string, string> } = {}) =>
  new OpenAI({ baseURL: `${url}/v1`, apiKey: 'not-checked', maxRetries: 0, ...options });

async function sseRouteText(url: string, message: string, sessionId: string): Promise<string> {
  let text = '';
  for await (const frame of streamSseRoute(url, { message, session_id: sessionId })) {
    const data = JSON.parse(frame.data) as { delta: string; done: boolean };
    if (data.done) break;
    text += data.delta;
  }
  return text;
}

/** The SDK as users run it, with its default retries, in a Sluice session; counts the requests it sends. */
function sdkWithDefaultRetries(url: string, sessionId: string): { client: OpenAI; requests: () => number } {
  let requests = 0;
  const client = new OpenAI({
    baseURL: `${url}/v1`,
    apiKey: 'not-checked',
    defaultHeaders: { 'X-Sluice-Session': sessionId },
    fetch: (input, init) => {
      requests++;
      return fetch(input, init);
    },
  });
  return { client, requests: () => requests };
}

describe('the official openai SDK against Sluice', () => {
  it('streams a reply with stream: true, with the same text and deltas as the SSE route', async () => {
    const { url } = await startServer();
    const stream = await sdk(url).chat.completions.create({
      model: SIMULATED_MODEL_ID,
      messages: [{ role: 'user', content: 'explain caching' }],
      stream: true,
    });
    const deltas: string[] = [];
    let finish: string | null | undefined;
    for await (const chunk of stream) {
      expect(chunk.object).toBe('chat.completion.chunk');
      expect(chunk.model).toBe(SIMULATED_MODEL_ID);
      const choice = chunk.choices[0];
      if (choice?.delta.content) deltas.push(choice.delta.content);
      if (choice?.finish_reason) finish = choice.finish_reason;
      expect(chunk.usage ?? undefined).toBeUndefined();
    }
    expect(finish).toBe('stop');
    expect(deltas).toEqual(simulatedDeltas('explain caching'));
    expect(deltas.join('')).toBe(await sseRouteText(url, 'explain caching', 'compare'));
  });

  it('honours a max_tokens (or max_completion_tokens) below the configuration: the reply stops there, finish_reason length', async () => {
    // A chat app's title or a one-word classification asks for a few tokens: answered in full,
    // it costs the whole reply and breaks the caller's layout.
    const { url } = await startServer();
    const full = simulatedDeltas('explain caching');
    for (const limit of [{ max_tokens: 5 }, { max_completion_tokens: 3 }]) {
      const stream = await sdk(url).chat.completions.create({
        model: SIMULATED_MODEL_ID,
        messages: [{ role: 'user', content: 'explain caching' }],
        stream: true,
        ...limit,
      });
      const deltas: string[] = [];
      let finish: string | null | undefined;
      for await (const chunk of stream) {
        if (chunk.choices[0]?.delta.content) deltas.push(chunk.choices[0].delta.content);
        if (chunk.choices[0]?.finish_reason) finish = chunk.choices[0].finish_reason;
      }
      expect(deltas).toEqual(full.slice(0, limit.max_tokens ?? limit.max_completion_tokens));
      expect(finish).toBe('length');
    }
    const whole = await sdk(url).chat.completions.create({
      model: SIMULATED_MODEL_ID,
      messages: [{ role: 'user', content: 'explain caching' }],
      max_tokens: 2,
    });
    expect(whole.choices[0]).toMatchObject({ message: { content: full.slice(0, 2).join('') }, finish_reason: 'length' });
    // Its usage never counts more than the caller allowed (the third review: an estimate of the
    // cut words in BPE tokens said 3 for max_tokens 2).
    expect(whole.usage?.completion_tokens).toBeLessThanOrEqual(2);
    // Not a number of tokens: refused, naming it.
    const refused = await sdk(url)
      .chat.completions.create({ model: SIMULATED_MODEL_ID, messages: [{ role: 'user', content: 'hi' }], max_tokens: 0 })
      .catch((error: unknown) => error);
    expect(refused).toBeInstanceOf(BadRequestError);
    expect((refused as BadRequestError).param).toBe('max_tokens');
  });

  it('gets usage when asked (stream_options.include_usage), and in a non-streamed completion', async () => {
    const { url } = await startServer({ SIM_USAGE: true });
    const client = sdk(url);
    const stream = await client.chat.completions.create({
      model: SIMULATED_MODEL_ID,
      messages: [{ role: 'user', content: 'explain caching' }],
      stream: true,
      stream_options: { include_usage: true },
    });
    const chunks = [];
    for await (const chunk of stream) chunks.push(chunk);
    const last = chunks.at(-1)!;
    expect(last.choices).toEqual([]);
    // Word mode counts words: the prompt's 2, and one per delta.
    expect(last.usage).toEqual({ prompt_tokens: 2, completion_tokens: 39, total_tokens: 41 });
    expect(chunks.slice(0, -1).every((c) => c.usage === null)).toBe(true);

    const completion = await client.chat.completions.create({ model: 'any-name', messages: [{ role: 'user', content: 'explain caching' }] });
    ChatCompletion.parse(completion);
    expect(completion.model).toBe('any-name');
    expect(completion.choices[0]!.message).toMatchObject({ role: 'assistant', content: simulatedDeltas('explain caching').join('') });
    expect(completion.choices[0]!.finish_reason).toBe('stop');
    expect(completion.usage).toEqual({ prompt_tokens: 2, completion_tokens: 39, total_tokens: 41 });
  });

  it('gets a proper APIError for bad input, with OpenAI error body, and nothing starts', async () => {
    const server = await startServer({ MAX_MESSAGE_CHARS: 20 });
    const client = sdk(server.url);
    const cases: Array<{ body: unknown; param: string | null }> = [
      { body: { model: 'm', messages: [] }, param: 'messages' },
      { body: { model: '', messages: [{ role: 'user', content: 'hi' }] }, param: 'model' },
      { body: { model: 'm', messages: [{ role: 'tool', content: 'hi' }] }, param: 'messages.0.role' },
      { body: { model: 'm', messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'x' } }] }] }, param: 'messages.0.content' },
      { body: { model: 'm', messages: [{ role: 'user', content: 'hi' }], n: 2 }, param: 'n' },
      { body: { model: 'm', messages: [{ role: 'user', content: 'hi' }], tools: [{ type: 'function' }] }, param: 'tools' },
      { body: { model: 'm', messages: [{ role: 'assistant', content: 'last is not the user' }] }, param: null },
      { body: { model: 'm', messages: [{ role: 'user', content: 'x'.repeat(21) }] }, param: null },
    ];
    for (const { body, param } of cases) {
      const error = await client.chat.completions.create({ ...(body as object), stream: true } as never).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(error, JSON.stringify(body)).toBeInstanceOf(BadRequestError);
      const apiError = error as APIError;
      expect(apiError.status).toBe(400);
      expect(apiError.code).toBe('invalid_request');
      expect(apiError.type).toBe('invalid_request_error');
      expect(apiError.param).toBe(param);
      expect(typeof (apiError.error as { message?: unknown }).message).toBe('string');
    }
    expect(server.sluice.service.runningCount).toBe(0);

    // Not JSON at all: the same shape, 400.
    const res = await fetch(`${server.url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"model":' });
    expect(res.status).toBe(400);
    expect(await res.json()).toEqual({
      error: { message: 'The request body is not valid JSON', type: 'invalid_request_error', param: null, code: 'invalid_json' },
    });
  });

  it('client.models.list() and models.retrieve() work', async () => {
    const { url } = await startServer();
    const client = sdk(url);
    const models = [];
    for await (const model of client.models.list()) models.push(model);
    expect(models.map((m) => m.id)).toEqual([SIMULATED_MODEL_ID]);
    expect(models[0]).toMatchObject({ object: 'model', owned_by: 'sluice' });
    OpenAIModelList.parse(await (await fetch(`${url}/v1/models`)).json());
    expect((await client.models.retrieve(SIMULATED_MODEL_ID)).id).toBe(SIMULATED_MODEL_ID);
    await expect(client.models.retrieve('no-such-model')).rejects.toMatchObject({ status: 404, code: 'not_found' });
  });

  it('with X-Sluice-Session, keeps the conversation in that session: only the new message is sent, history is the context', async () => {
    const recorder = recordingProvider(createSimulatedProvider({ delayMs: 0 }));
    const { url } = await startServer({}, { provider: recorder.provider });
    const client = sdk(url, { defaultHeaders: { 'X-Sluice-Session': 'sdk-session' } });
    const first = await client.chat.completions.create({ model: 'm', messages: [{ role: 'user', content: 'first question' }] });
    // The client may send the whole conversation, as OpenAI clients do: the session's history wins.
    const stream = await client.chat.completions.create({
      model: 'm',
      stream: true,
      messages: [
        { role: 'user', content: 'ignored, the session has it' },
        { role: 'assistant', content: 'ignored too' },
        {
          role: 'user',
          content: [
            { type: 'text', text: 'second ' },
            { type: 'text', text: 'question' },
          ],
        },
      ],
    });
    let second = '';
    for await (const chunk of stream) second += chunk.choices[0]?.delta.content ?? '';

    expect(recorder.calls[1]!.messages.map((m) => [m.role, m.content])).toEqual([
      ['user', 'first question'],
      ['assistant', first.choices[0]!.message.content],
      ['user', 'second question'],
    ]);
    const history = SessionHistory.parse(await (await fetch(`${url}/v1/sessions/sdk-session/messages`)).json());
    expect(history.messages.map((m) => [m.role, m.content, m.status])).toEqual([
      ['user', 'first question', 'complete'],
      ['assistant', simulatedDeltas('first question').join(''), 'complete'],
      ['user', 'second question', 'complete'],
      ['assistant', second, 'complete'],
    ]);
  });

  it('without a session it is stateless: the whole conversation goes to the provider and nothing is stored', async () => {
    const recorder = recordingProvider(createSimulatedProvider({ delayMs: 0 }));
    const { url } = await startServer({}, { provider: recorder.provider });
    await sdk(url).chat.completions.create({
      model: 'm',
      messages: [
        { role: 'developer', content: 'be brief' },
        { role: 'user', content: 'one' },
        { role: 'assistant', content: 'two' },
        { role: 'user', content: 'three' },
      ],
    });
    expect(recorder.calls[0]!.messages.map((m) => [m.role, m.content])).toEqual([
      ['system', 'be brief'],
      ['user', 'one'],
      ['assistant', 'two'],
      ['user', 'three'],
    ]);
    const history = SessionHistory.parse(await (await fetch(`${url}/v1/sessions/default/messages`)).json());
    expect(history.messages).toEqual([]);
  });

  it('a busy session is a 409 ConflictError; a bad session header a 400', async () => {
    const { url } = await startServer({ SIM_DELAY_MS: 20 });
    const client = sdk(url, { defaultHeaders: { 'X-Sluice-Session': 'busy' } });
    const running = await client.chat.completions.create({ model: 'm', messages: [{ role: 'user', content: 'long' }], stream: true });
    const iterator = running[Symbol.asyncIterator]();
    await iterator.next(); // the reply is running
    await expect(client.chat.completions.create({ model: 'm', messages: [{ role: 'user', content: 'again' }] })).rejects.toBeInstanceOf(ConflictError);
    for (let r = await iterator.next(); !r.done; r = await iterator.next());

    const bad = await postCompletion(url, { model: 'm', messages: [{ role: 'user', content: 'hi' }] }, { 'x-sluice-session': 'no spaces allowed' });
    expect(bad.status).toBe(400);
    expect(bad.errorBody?.error.code).toBe('invalid_request');
  });

  it("with the SDK's default retries, a busy session's 409 is not retried (x-should-retry: false): the caller is told, and no turn is added behind its back", async () => {
    const { url } = await startServer({ SIM_DELAY_MS: 50 });
    const { client, requests } = sdkWithDefaultRetries(url, 'retry');
    const running = streamSseRoute(url, { message: 'long', session_id: 'retry' });
    await running.next(); // the reply is running, for about two seconds
    const error: unknown = await client.chat.completions.create({ model: 'm', messages: [{ role: 'user', content: 'again' }] }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ConflictError);
    expect((error as ConflictError).headers?.get('x-should-retry')).toBe('false');
    expect(requests()).toBe(1);
    // Sluice's own routes say the same.
    const own = await fetch(`${url}/v1/chat/stream`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{"message":"again","session_id":"retry"}',
    });
    expect(own.status).toBe(409);
    expect(own.headers.get('x-should-retry')).toBe('false');
    await own.text();
    for await (const _ of running) void _;
    const history = SessionHistory.parse(await (await fetch(`${url}/v1/sessions/retry/messages`)).json());
    expect(history.messages.map((m) => m.content)).toEqual(['long', expect.any(String)]);
  });

  it("with X-Sluice-Session and the SDK's default retries, a reply that failed is not sent again (x-should-retry: false): its turn is stored, a retry would be a second one", async () => {
    // Fails before its first token on the first call, after two on the second.
    let calls = 0;
    const failing: Provider = {
      name: 'failing',
      async *stream() {
        if (calls++ > 0) yield* ['Hel', 'lo'];
        throw new SluiceError('upstream_error', 'The upstream model reported an error');
      },
    };
    const { url } = await startServer({}, { provider: failing });
    const { client, requests } = sdkWithDefaultRetries(url, 'fails');
    for (const stream of [true, false]) {
      const error: unknown = await client.chat.completions
        .create({ model: 'm', messages: [{ role: 'user', content: `stream ${stream}` }], stream })
        .catch((e: unknown) => e);
      expect(error).toBeInstanceOf(APIError);
      expect((error as APIError).status).toBe(502);
      expect((error as APIError).headers?.get('x-should-retry')).toBe('false');
    }
    expect(requests()).toBe(2);
    const history = SessionHistory.parse(await (await fetch(`${url}/v1/sessions/fails/messages`)).json());
    expect(history.messages.map((m) => [m.role, m.status, m.content])).toEqual([
      ['user', 'complete', 'stream true'],
      ['assistant', 'failed', ''],
      ['user', 'complete', 'stream false'],
      ['assistant', 'failed', 'Hello'],
    ]);
    // Stateless, nothing is stored: a retry is the SDK's to make, as against OpenAI.
    const stateless = await postCompletion(url, { model: 'm', messages: [{ role: 'user', content: 'hi' }] });
    expect(stateless.status).toBe(502);
    expect(stateless.headers.get('x-should-retry')).toBeNull();
  });

  it("with X-Sluice-Session, a turn the SDK sends again because the server died mid-reply (a connection error: the SDK's default retry) is stored once", async () => {
    for (const stream of [false, true]) {
      const env = {
        PORT: await freePort(),
        DATA_DIR: mkdtempSync(join(tmpdir(), 'sluice-sdk-retry-')),
        SIM_DELAY_MS: 30,
        SIM_FIRST_TOKEN_MS: stream ? 2000 : 0,
      };
      const first = await startSluiceProcess(env);
      const client = new OpenAI({ baseURL: `${first.url}/v1`, apiKey: 'unused', maxRetries: 5, defaultHeaders: { 'X-Sluice-Session': 'retried' } });
      const body = { model: 'sluice-simulated', messages: [{ role: 'user' as const, content: 'tell me about retries' }] };
      const answer = stream
        ? client.chat.completions.create({ ...body, stream: true }).then(async (chunks) => {
            let text = '';
            for await (const chunk of chunks) text += chunk.choices[0]?.delta.content ?? '';
            return text;
          })
        : client.chat.completions.create(body).then((completion) => completion.choices[0]!.message.content);
      // Killed once the turn is stored, before anything of the answer went out (stream: true sends
      // nothing before the first token: a slow first token is this window).
      await vi.waitFor(async () =>
        expect(SessionHistory.parse(await (await fetch(`${first.url}/v1/sessions/retried/messages`)).json()).messages).toHaveLength(1),
      );
      await first.stop('SIGKILL');
      const second = await startSluiceProcess(env);
      const text = await answer;
      const messages = SessionHistory.parse(await (await fetch(`${second.url}/v1/sessions/retried/messages`)).json()).messages;
      expect(messages.filter((m) => m.role === 'user')).toHaveLength(1);
      expect(messages.at(-1)).toMatchObject({ role: 'assistant', status: 'complete', content: text });
      await second.stop();
    }
    // Four servers started as processes, and the SDK's own backoff between its tries (up to 8 s):
    // 14 s on an idle machine, 24 s beside a running suite.
  }, 60_000);

  it('a turn sent again after several tries that got no answer is stored once, and later prompts hold only its finished reply', async () => {
    const recorder = recordingProvider(createSimulatedProvider({ delayMs: 20 }));
    const { url } = await startServer({}, { provider: recorder.provider });
    const send = async (retry: number, message: string, leave: boolean): Promise<void> => {
      const controller = new AbortController();
      const response = fetch(`${url}/v1/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-sluice-session': 'tries', 'x-stainless-retry-count': String(retry) },
        body: JSON.stringify({ model: 'm', messages: [{ role: 'user', content: message }] }),
        signal: controller.signal,
      });
      if (!leave) {
        expect((await response).status).toBe(200);
        return;
      }
      // The client gives up (a timeout, a dropped connection) once the reply runs: it stops at once.
      const calls = recorder.calls.length;
      await vi.waitFor(() => expect(recorder.calls[calls]?.yielded ?? 0).toBeGreaterThan(2));
      controller.abort();
      await response.catch(() => undefined);
      await vi.waitFor(() => expect(recorder.calls[calls]!.settled).toBe(true));
    };
    await send(0, 'first question', true);
    await send(1, 'first question', true);
    await send(2, 'first question', false);
    await send(0, 'second question', false);
    const history = SessionHistory.parse(await (await fetch(`${url}/v1/sessions/tries/messages`)).json());
    expect(history.messages.map((m) => [m.role, m.status])).toEqual([
      ['user', 'complete'],
      ['assistant', 'interrupted'],
      ['assistant', 'interrupted'],
      ['assistant', 'complete'],
      ['user', 'complete'],
      ['assistant', 'complete'],
    ]);
    // Each try answers the first question alone; the next turn's prompt alternates, with the finished reply only.
    for (const call of recorder.calls.slice(0, 3)) expect(call.messages.map((m) => [m.role, m.content])).toEqual([['user', 'first question']]);
    expect(recorder.calls[3]!.messages.map((m) => [m.role, m.content])).toEqual([
      ['user', 'first question'],
      ['assistant', history.messages[3]!.content],
      ['user', 'second question'],
    ]);
  });

  it('a client that leaves stops its reply at once, whatever RESUME_GRACE_MS (this route has no resume)', async () => {
    const recorder = recordingProvider(createSimulatedProvider({ delayMs: 25 }));
    const { url } = await startServer({ RESUME_GRACE_MS: 60_000 }, { provider: recorder.provider });
    const controller = new AbortController();
    const stream = await sdk(url, { defaultHeaders: { 'X-Sluice-Session': 'leaves' } }).chat.completions.create(
      { model: 'm', messages: [{ role: 'user', content: 'leave early' }], stream: true },
      { signal: controller.signal },
    );
    const iterator = stream[Symbol.asyncIterator]();
    await iterator.next();
    await iterator.next();
    controller.abort();
    const leftAt = performance.now();
    await vi.waitFor(() => expect(recorder.calls[0]?.settled).toBe(true));
    expect(recorder.calls[0]!.aborted).toBe(true);
    expect(performance.now() - leftAt).toBeLessThan(5000);
    const history = SessionHistory.parse(await (await fetch(`${url}/v1/sessions/leaves/messages`)).json());
    expect(history.messages[1]).toMatchObject({ status: 'interrupted' });
  });

  it('speaks the wire format exactly: SSE headers, a role chunk first, a finish chunk, data: [DONE] last', async () => {
    const { url } = await startServer();
    const answer = await postCompletion(url, { model: 'm', messages: [{ role: 'user', content: 'explain caching' }], stream: true });
    expect(answer.status).toBe(200);
    expect(answer.headers.get('content-type')).toMatch(/^text\/event-stream/);
    expect(answer.headers.get('cache-control')).toBe('no-cache');
    expect(answer.done).toBe(true);
    expect(answer.text.endsWith('data: [DONE]\n\n')).toBe(true);
    expect(answer.chunks[0]!.choices[0]!.delta).toEqual({ role: 'assistant', content: '' });
    expect(answer.chunks.at(-1)!.choices[0]).toMatchObject({ delta: {}, finish_reason: 'stop' });
    expect(new Set(answer.chunks.map((c) => c.id)).size).toBe(1);
    expect(answer.chunks[0]!.id).toMatch(/^chatcmpl-/);
    expect(chunkText(answer.chunks)).toBe(simulatedDeltas('explain caching').join(''));
  });
});
