import postgres from 'postgres';
import { describe, expect, it } from 'vitest';
import { startPostgres } from './helpers/postgres.ts';
import { startServer } from './helpers/server.ts';
import { cancel, openSseRoute, parseSse, type SseFrame } from './helpers/sse.ts';

// cc98aa0: a start refused session_busy "attaches" to the session's running reply when it answers
// the same owner's same message and nobody follows it. It checks that the reply has not ended, not
// that it still runs: a reply already stopped (cancelled by its user, who then sends the message
// again) but still storing its end is taken for the new request's own. The user's new send is
// answered with the error of the reply they cancelled, and no turn is taken; before, it was a 409
// (the session is still busy) that a client retries.

describe('a message sent again while the reply its user cancelled is still ending', () => {
  it('is refused 409 session_busy (or run as a new turn), not answered with the cancelled reply', async () => {
    const pg = await startPostgres();
    if (!pg) return;
    const url = await pg.createDatabase();
    const server = await startServer({ DATABASE_URL: url, SIM_DELAY_MS: 20 });
    const body = { message: 'tell me more', session_id: 'cancel-then-again' };
    let sawTwo!: () => void;
    const two = new Promise<void>((resolve) => (sawTwo = resolve));
    const frames: SseFrame[] = [];
    const first = openSseRoute(server.url, body, {}, (frame) => {
      frames.push(frame);
      if (frames.length === 2) sawTwo();
    });
    await two;

    // The reply's last write waits (a slow store): the window between the cancel and the reply's end.
    const admin = postgres(url, { max: 1, onnotice: () => undefined });
    let locked!: () => void;
    const taken = new Promise<void>((resolve) => (locked = resolve));
    let release!: () => void;
    const released = new Promise<void>((resolve) => (release = resolve));
    const holding = admin.begin(async (tx) => {
      await tx`LOCK TABLE history_messages IN SHARE MODE`;
      locked();
      await released;
    });
    try {
      await taken;
      expect(await cancel(server.url, 'cancel-then-again')).toBe(true);
      // The user's page stops following the cancelled reply, and sends the message again.
      first.cut();
      await first.done;
      const again = await fetch(`${server.url}/v1/chat/stream`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(body),
      });
      release();
      const text = await again.text();
      const events = parseSse(text).map((f) => [f.event, f.event === 'error' ? (JSON.parse(f.data) as { message: string }).message : undefined]);
      expect({ status: again.status, events: events.filter(([e]) => e === 'error') }).toEqual({ status: 409, events: [] });
    } finally {
      release();
      await holding;
      await admin.end({ timeout: 1 });
    }
  }, 60_000);
});
