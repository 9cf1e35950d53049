import { describe, expect, it, vi } from 'vitest';
import type { Provider } from '../server/core/providers/provider.ts';
import { MemoryHistory } from '../server/core/store/history/memory.ts';
import type { ChatMessage } from '../shared/messages.ts';
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

  it('a session whose reply is running is not the one dropped: it would come back holding the reply alone', async () => {
    const history = new MemoryHistory({ maxSessions: 2 });
    const message = (role: ChatMessage['role'], content: string): ChatMessage => ({ role, content, status: 'complete', createdAt: new Date().toISOString() });
    await history.begin('running', message('user', 'a long question'), { keepLast: 10, replyId: 'r1' });
    // Two new sessions while the reply runs: the idle one goes, not the running one (the oldest).
    await history.append('idle', message('user', 'x'), { keepLast: 10 });
    await history.append('new', message('user', 'y'), { keepLast: 10 });
    await history.append('running', message('assistant', 'the answer'), { keepLast: 10, replyId: 'r1' });
    expect((await history.read('running')).map((m) => m.content)).toEqual(['a long question', 'the answer']);
    expect(await history.read('idle')).toEqual([]);
    expect(history.size).toBe(2);
  });

  it('over the bound while every session had a reply running, it is back within it once they end', async () => {
    const history = new MemoryHistory({ maxSessions: 2 });
    const message = (role: ChatMessage['role'], content: string): ChatMessage => ({ role, content, status: 'complete', createdAt: new Date().toISOString() });
    for (const id of ['a', 'b', 'c']) await history.begin(id, message('user', 'q'), { keepLast: 10, replyId: `r-${id}` });
    expect(history.size).toBe(3);
    for (const id of ['a', 'b', 'c']) await history.append(id, message('assistant', 'answer'), { keepLast: 10, replyId: `r-${id}` });
    await history.append('d', message('user', 'next'), { keepLast: 10 });
    expect(history.size).toBe(2);
  });

  it('finished replies kept for resumes are bounded in characters (RESUMABLE_MAX_CHARS): the oldest go first', async () => {
    // Each reply costs its 250 characters of text and 1,000 for its bookkeeping: two fit.
    const { url } = await startServer({ STORE: 'memory', RESUMABLE_MAX_CHARS: 3000 });
    const lastIds: string[] = [];
    for (const session of ['one', 'two', 'three']) {
      const res = await fetch(`${url}/v1/chat/stream`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ message: 'hello', session_id: session }),
      });
      const ids = [...(await res.text()).matchAll(/^id: (\S+)$/gm)].map((m) => m[1]!);
      lastIds.push(ids.at(-2)!);
    }
    const resume = (id: string) =>
      fetch(`${url}/v1/chat/stream`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'last-event-id': id },
        body: JSON.stringify({ message: 'x' }),
      });
    // The first no longer fits, the last does.
    expect((await resume(lastIds[0]!)).status).toBe(404);
    const last = await resume(lastIds[2]!);
    expect(last.status).toBe(200);
    expect(await last.text()).toContain('"done": true');
  });

  it('replies without text count toward RESUMABLE_MAX_CHARS too (each costs its bookkeeping), and replies nobody can resume are not kept', async () => {
    const mute: Provider = { name: 'mute', async *stream() {} };
    const server = await startServer({ STORE: 'memory', RESUMABLE_MAX_CHARS: 20_000 }, { provider: mute });
    for (let i = 0; i < 60; i++) {
      const res = await fetch(`${server.url}/v1/chat/stream`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ message: 'hello', session_id: `mute-${i}` }),
      });
      expect(await res.text()).toContain('"done": true');
    }
    const kept = server.sluice.service.resumableCount;
    expect(kept).toBeGreaterThan(0);
    expect(kept).toBeLessThan(60);
    // The OpenAI route's replies belong to no session: no resume can reach them.
    const model = ((await (await fetch(`${server.url}/v1/models`)).json()) as { data: Array<{ id: string }> }).data[0]!.id;
    for (let i = 0; i < 5; i++) {
      const res = await fetch(`${server.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ model, stream: true, messages: [{ role: 'user', content: 'hello' }] }),
      });
      expect(res.status).toBe(200);
      await res.text();
    }
    expect(server.sluice.service.resumableCount).toBe(kept);
  });

  it('finished replies kept for resumes are let go EVENT_LOG_TTL_MS after they end, though nothing else comes', async () => {
    const server = await startServer({ STORE: 'memory', EVENT_LOG_TTL_MS: 300 });
    for (const session of ['one', 'two']) {
      const res = await fetch(`${server.url}/v1/chat/stream`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ message: 'hello', session_id: session }),
      });
      await res.text();
    }
    expect(server.sluice.service.resumableCount).toBe(2);
    // A quiet server: no reply starts, no resume comes, and yet the text goes.
    await vi.waitFor(() => expect(server.sluice.service.resumableCount).toBe(0), { timeout: 3000 });
  });
});
