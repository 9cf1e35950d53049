import { describe, expect, it } from 'vitest';
import { startSluiceProcess } from './helpers/process.ts';
import { startRedis } from './helpers/redis.ts';
import { startServer } from './helpers/server.ts';
import { drain, history, streamSseRoute } from './helpers/sse.ts';

// DELETE /v1/sessions/{id} cancels the running reply and waits for its end "so that its last write
// cannot bring the session back" (chat-service.ts), but only for DELETE_WAIT_MS (5 s); then it
// deletes anyway and says so. A reply whose instance is slow to act on the cancel (a stall: a long
// GC pause, a VM frozen, a saturated event loop; still alive by its liveness mark) writes its
// final message afterwards, into the session just deleted: the session is back, holding a reply
// without its message.

describe('deleting a session whose reply runs on a stalled instance', () => {
  it('a deletion that answered success stays done: the reply that ends afterwards does not bring the session back', async () => {
    const redis = await startRedis();
    if (!redis) return;
    const a = await startSluiceProcess({ REDIS_URL: redis.url, SIM_DELAY_MS: 40 });
    const b = await startServer({ REDIS_URL: redis.url });
    const reply = streamSseRoute(a.url, { message: 'long '.repeat(300).trim(), session_id: 'stalled' });
    for (let i = 0; i < 3; i++) await reply.next();
    // A stalls (well within its liveness mark, LIVENESS_TTL_MS = 10 s by default).
    a.child.kill('SIGSTOP');
    let deleted: Response;
    try {
      deleted = await fetch(`${b.url}/v1/sessions/stalled`, { method: 'DELETE' });
    } finally {
      a.child.kill('SIGCONT');
    }
    // A wakes, finds the cancel, and ends the reply: its stream ends.
    const rest = await drain(reply);
    expect(rest.at(-1)!.event).toBe('error');
    const after = (await history(b.url, 'stalled')).messages.map((m) => [m.role, m.status]);
    // The reply still held the session after the deletion's wait: the deletion is refused (409),
    // and the session is as the reply left it, its message and its reply.
    expect(deleted.status).toBe(409);
    expect(after).toEqual([
      ['user', 'complete'],
      ['assistant', 'interrupted'],
    ]);
    await a.stop();
  }, 40_000);
});
