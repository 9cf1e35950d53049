import { describe, expect, it } from 'vitest';
import { startFakeUpstream } from './helpers/fake-upstream.ts';
import { startServer } from './helpers/server.ts';

/** The sum of a metric's samples whose labels include `labels`, in Prometheus exposition text. */
function total(text: string, name: string, labels: Record<string, string> = {}): number {
  let sum = 0;
  for (const line of text.split('\n')) {
    const match = /^([a-z_]+)(?:\{([^}]*)\})? (\S+)$/.exec(line);
    if (!match || match[1] !== name) continue;
    const have = Object.fromEntries([...(match[2] ?? '').matchAll(/(\w+)="([^"]*)"/g)].map((m) => [m[1], m[2]]));
    if (Object.entries(labels).every(([k, v]) => have[k] === v)) sum += Number(match[3]);
  }
  return sum;
}

describe('metrics of an upstream failure', () => {
  it('a reply whose upstream fails is counted once, as a failed generation, whichever route asked for it (not also as a rejected request on the OpenAI route)', async () => {
    const upstream = await startFakeUpstream({ kind: 'status', status: 500 });
    const { url } = await startServer({ LLM_PROVIDER: 'openai', OPENAI_BASE_URL: upstream.baseURL, LLM_MODEL: 'm' });
    // The same upstream failure, once through the documented SSE route, once through the OpenAI route.
    const sse = await fetch(`${url}/v1/chat/stream`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{"message":"x","session_id":"a"}',
    });
    expect(await sse.text()).toContain('event: error');
    const openai = await fetch(`${url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'm', stream: true, messages: [{ role: 'user', content: 'x' }] }),
    });
    expect(openai.status).toBe(502);
    await openai.text();

    const metrics = await (await fetch(`${url}/metrics`)).text();
    expect(total(metrics, 'sluice_generations_total', { outcome: 'failed' })).toBe(2);
    expect(total(metrics, 'sluice_generation_errors_total', { code: 'upstream_error' })).toBe(2);
    // "Requests refused before streaming" are the ones Sluice turned away (limits, bad input, auth):
    // the upstream's failure is already counted above, and on the SSE route it is not counted here.
    expect(total(metrics, 'sluice_rejected_requests_total', { reason: 'upstream_error' })).toBe(0);
  });
});
