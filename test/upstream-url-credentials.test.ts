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

describe('OPENAI_BASE_URL credentials in the logs', () => {
  it('an upstream (a proxy) that echoes the Basic credential it refused does not put the password, base64-encoded, in the logs', async () => {
    const { startSluiceProcess } = await import('./helpers/process.ts');
    const { drain, streamSseRoute } = await import('./helpers/sse.ts');
    const { vi } = await import('vitest');
    const upstream = await startFakeUpstream({
      kind: 'custom',
      serve: (req, res) => {
        res.writeHead(401, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ error: { message: `proxy refused credentials: ${req.headers.authorization}` } }));
      },
    });
    const password = 'PLANTED-proxy-pass-0123456789';
    const sluice = await startSluiceProcess({
      LLM_PROVIDER: 'openai',
      OPENAI_BASE_URL: upstream.baseURL.replace('http://', `http://proxy:${password}@`),
      LLM_MODEL: 'm',
      UPSTREAM_MAX_RETRIES: 0,
    });
    const before = sluice.output().length;
    await drain(streamSseRoute(sluice.url, { message: 'hi', session_id: 'echo' })).catch(() => []);
    await vi.waitFor(() => expect(sluice.output().slice(before)).toMatch(/generation (failed|finished)/));
    const logged = sluice.output().slice(before);
    expect(logged).not.toContain(password);
    expect(logged).not.toContain(Buffer.from(`proxy:${password}`).toString('base64'));
    await sluice.stop();
    await upstream.close();
  }, 30_000);
});
