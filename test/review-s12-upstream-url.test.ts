import { describe, expect, it } from 'vitest';
import { DEFAULT_TOKENS, startFakeUpstream } from './helpers/fake-upstream.ts';
import { startServer } from './helpers/server.ts';

const chunk = (delta: Record<string, unknown>, finish: string | null = null): string =>
  `data: ${JSON.stringify({ id: 'c', object: 'chat.completion.chunk', created: 1, model: 'm', choices: [{ index: 0, delta, finish_reason: finish }] })}\n\n`;

describe('OPENAI_BASE_URL credentials with a % that starts no escape (a password such as "50%off")', () => {
  it('start-up either uses them as written or refuses the setting by name; it does not crash with URIError', async () => {
    const seen: Array<string | undefined> = [];
    const upstream = await startFakeUpstream({
      kind: 'custom',
      serve: (req, res) => {
        seen.push(req.headers.authorization);
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        res.end(DEFAULT_TOKENS.map((t) => chunk({ content: t })).join('') + chunk({}, 'stop') + 'data: [DONE]\n\n');
      },
    });
    const started = await startServer({
      LLM_PROVIDER: 'openai',
      OPENAI_BASE_URL: upstream.baseURL.replace('http://', 'http://proxy:50%off@'),
      LLM_MODEL: 'm',
    }).then(
      () => 'started',
      (error: Error) => `${error.name}: ${error.message}`,
    );
    expect(started).not.toMatch(/URIError|URI malformed/);
    if (started !== 'started') expect(started).toMatch(/OPENAI_BASE_URL/);
  });
});
