import { describe, expect, it } from 'vitest';
import { SessionHistory } from '../shared/index.ts';
import { startServer } from './helpers/server.ts';

describe('STORE=memory stays bounded', () => {
  it('past MEMORY_MAX_SESSIONS the least recently used sessions are dropped, and counted in /metrics', async () => {
    const { url } = await startServer({ STORE: 'memory', MEMORY_MAX_SESSIONS: 20 });
    const sessions = Array.from({ length: 60 }, (_, i) => `s${i}`);
    for (const session of sessions) {
      const res = await fetch(`${url}/v1/chat/stream`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ message: `hello ${session}`, session_id: session }),
      });
      expect(res.status).toBe(200);
      await res.text();
    }
    const kept: string[] = [];
    for (const session of sessions) {
      const history = SessionHistory.parse(await (await fetch(`${url}/v1/sessions/${session}/messages`)).json());
      if (history.messages.length > 0) kept.push(session);
    }
    expect(kept).toEqual(sessions.slice(40));
    const metrics = await (await fetch(`${url}/metrics`)).text();
    expect(metrics).toMatch(/^sluice_sessions_evicted_total\{reason="capacity"\} 40$/m);
  });
});
