import { describe, expect, it } from 'vitest';
import { startFakeUpstream } from './helpers/fake-upstream.ts';
import { metricTotal } from './helpers/metrics-text.ts';
import { startServer } from './helpers/server.ts';

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
    expect(metricTotal(metrics, 'sluice_generations_total', { outcome: 'failed' })).toBe(2);
    expect(metricTotal(metrics, 'sluice_generation_errors_total', { code: 'upstream_error' })).toBe(2);
    // "Requests refused before streaming" are the ones Sluice turned away (limits, bad input, auth):
    // the upstream's failure is already counted above, and on the SSE route it is not counted here.
    expect(metricTotal(metrics, 'sluice_rejected_requests_total', { reason: 'upstream_error' })).toBe(0);
  });
});
