import { monitorEventLoopDelay } from 'node:perf_hooks';
import { describe, expect, it } from 'vitest';
import { startServer } from './helpers/server.ts';

// What one client's turn costs every other stream: the usage estimate counts the session's whole
// history on the event loop, remembering at most 4 M characters of counts (usage.ts). A session
// may hold MAX_HISTORY_MESSAGES (1000) messages of MAX_MESSAGE_CHARS (32,000): once its history
// is longer than what is remembered, every turn counts all of it again, and every stream of the
// process waits meanwhile.

const WORDS = ['cache', 'server', 'stream', 'token', 'reply', 'session', 'history', 'limit', 'bound', 'socket', 'memory', 'proxy'];

/** 32,000 characters of ordinary words (no long runs), different every time. */
function longMessage(seed: number): string {
  let s = '';
  let x = seed;
  while (s.length < 32_000) {
    x = (x * 1103515245 + 12345) % 2 ** 31;
    s += `${WORDS[x % WORDS.length]!} `;
  }
  return s.slice(0, 32_000);
}

async function turn(url: string, sessionId: string, message: string): Promise<void> {
  const res = await fetch(`${url}/v1/chat/stream`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ message, session_id: sessionId }),
  });
  expect(res.status).toBe(200);
  expect(await res.text()).toMatch(/"done": true/);
}

describe("one session's long history and the event loop", () => {
  it("a turn in a session of long messages (each within MAX_MESSAGE_CHARS) does not hold the event loop for longer than a stream's pace", async () => {
    const { url } = await startServer({ SIM_DELAY_MS: 0 });
    // 90 turns of 32,000 characters: 180 messages, well within MAX_HISTORY_MESSAGES (1000).
    for (let i = 0; i < 90; i++) await turn(url, 'long', longMessage(i + 1));

    const delay = monitorEventLoopDelay({ resolution: 10 });
    delay.enable();
    await turn(url, 'long', longMessage(1000));
    delay.disable();
    const heldMs = Math.round(delay.max / 1e6);
    // SIM_DELAY_MS (50 ms) is the pace every stream keeps; the turns before the history outgrew the
    // remembered counts held the loop for under 10 ms each, and the defect this guards against for
    // 329 ms to 2 s. The bound leaves room for a 2-core machine running three test files at once.
    expect(heldMs, 'longest time the event loop was held during one turn (ms)').toBeLessThan(200);
  }, 120_000);
});
