import { describe, expect, it } from 'vitest';
import { postCompletion } from './helpers/openai-wire.ts';
import { startServer } from './helpers/server.ts';

// The OpenAI-compatible route echoes the request's `model` (any non-empty name) in every chunk it
// streams. The name has no bound but the body's (MAX_BODY_BYTES, 64 KiB), so a client chooses how
// many bytes the server writes per token: what one token costs to encode and send is the client's
// choice, not the reply's.

describe("the OpenAI route: bytes written per token do not follow the client's model name", () => {
  it('a 60,000-character model name is refused, or costs a streamed reply no more than a short one (not 60 KB a token)', async () => {
    const { url } = await startServer({ SIM_DELAY_MS: 0 });
    const ask = (model: string) => postCompletion(url, { model, stream: true, messages: [{ role: 'user', content: 'explain caching' }] });

    const short = await ask('sluice-simulated');
    expect(short.status).toBe(200);
    const long = await ask('m'.repeat(60_000));
    if (long.status === 400) {
      expect(long.errorBody?.error.param).toBe('model');
      return;
    }
    expect(long.status).toBe(200);
    // The same reply (the simulator's, 39 tokens) either way.
    expect(long.chunks.length).toBe(short.chunks.length);
    const ratio = long.text.length / short.text.length;
    expect(ratio, `bytes written for the reply with the long model name, as a multiple of the short one's (${short.text.length} bytes)`).toBeLessThan(2);
  });
});
