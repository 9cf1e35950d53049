import { describe, expect, it } from 'vitest';
import { startServer } from './helpers/server.ts';

// An SDK retry of a completed turn (x-stainless-retry-count) is answered from history
// (server/core/stored-reply.ts). The answer must be the one the lost response carried: the same
// text, usage and finish_reason. A reply cut by max_tokens ended for its `length`; a retry that
// says `stop` tells the caller the reply is whole when it is not.

describe('the SDK retry answered from history', () => {
  it('keeps the finish_reason of the reply it answers with (length, not stop)', async () => {
    const { url } = await startServer({ SIM_DELAY_MS: 0 });
    const ask = async (retry: boolean): Promise<{ content: string; finish: string; usage: unknown }> => {
      const res = await fetch(`${url}/v1/chat/completions`, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          'x-sluice-session': 'cut-by-length',
          ...(retry ? { 'x-stainless-retry-count': '1' } : {}),
        },
        body: JSON.stringify({ model: 'sluice-simulated', max_tokens: 3, messages: [{ role: 'user', content: 'tell me a long story' }] }),
      });
      expect(res.status).toBe(200);
      const body = (await res.json()) as { choices: { message: { content: string }; finish_reason: string }[]; usage: unknown };
      return { content: body.choices[0]!.message.content, finish: body.choices[0]!.finish_reason, usage: body.usage };
    };
    const first = await ask(false);
    expect(first.finish).toBe('length');
    const retried = await ask(true);
    // Answered from history (not run again): the same text.
    expect(retried.content).toBe(first.content);
    expect(retried.finish).toBe(first.finish);
  });
});
