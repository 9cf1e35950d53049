import OpenAI from 'openai';
import { describe, expect, it } from 'vitest';
import { SessionHistory } from '../shared/index.ts';
import { startServer } from './helpers/server.ts';
import { startTcpProxy } from './helpers/tcp-proxy.ts';

// openai-sdk.test.ts covers the SDK's retry of a turn whose reply never finished (the server died
// mid-reply). This is the other common cut: the reply finished and was stored, and its answer was
// lost on the way back (a connection reset as the response goes out). The SDK, with its default
// retries, sends the very same request again, marked as a retry (x-stainless-retry-count: 1).
// Nothing lost, nothing doubled: the session must hold the turn once, and the retry be answered
// with that turn's reply, not with a second call of the model behind the caller's back.

async function history(url: string, sessionId: string): Promise<SessionHistory> {
  return SessionHistory.parse(await (await fetch(`${url}/v1/sessions/${sessionId}/messages`)).json());
}

describe("the openai SDK's default retry of a completed turn whose answer was lost", () => {
  it('stream: false: the turn is stored once, and the retry answers with its reply', async () => {
    const { url } = await startServer({ SIM_DELAY_MS: 2 });
    const proxy = await startTcpProxy(url);
    // The whole completion is written by the server, and lost with its connection on the way back.
    proxy.loseAnswer('"chat.completion"');
    // The SDK as users run it: default retries (a connection error is retried).
    const client = new OpenAI({ baseURL: `${proxy.url}/v1`, apiKey: 'unused', defaultHeaders: { 'X-Sluice-Session': 'lost-answer' } });
    const completion = await client.chat.completions.create({ model: 'sluice-simulated', messages: [{ role: 'user', content: 'what is a retry?' }] });
    const text = completion.choices[0]!.message.content;
    const messages = (await history(url, 'lost-answer')).messages;
    expect(messages.map((m) => [m.role, m.status])).toEqual([
      ['user', 'complete'],
      ['assistant', 'complete'],
    ]);
    expect(messages[1]!.content).toBe(text);
  });

  it('the same words asked again, not as a retry, are a new turn with a new reply', async () => {
    const { url } = await startServer({ SIM_DELAY_MS: 0 });
    const client = new OpenAI({ baseURL: `${url}/v1`, apiKey: 'unused', defaultHeaders: { 'X-Sluice-Session': 'asked-twice' } });
    for (let turn = 0; turn < 2; turn++) await client.chat.completions.create({ model: 'sluice-simulated', messages: [{ role: 'user', content: 'continue' }] });
    const messages = (await history(url, 'asked-twice')).messages;
    expect(messages.map((m) => [m.role, m.status])).toEqual([
      ['user', 'complete'],
      ['assistant', 'complete'],
      ['user', 'complete'],
      ['assistant', 'complete'],
    ]);
  });
});
