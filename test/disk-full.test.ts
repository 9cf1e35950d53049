import { describe, expect, it, vi } from 'vitest';
import { simulatedDeltas } from '../server/core/providers/simulated.ts';
import { SseErrorData, SseMessageData } from '../shared/index.ts';
import { startSluiceProcess } from './helpers/process.ts';
import { startSmallDisk } from './helpers/small-disk.ts';
import { drain, history, type SseFrame, streamSseRoute } from './helpers/sse.ts';

// The default store (SQLite in DATA_DIR) on a real file system that fills up: a 4 MB tmpfs.

const startTurn = (url: string, session: string, message: string): Promise<Response> =>
  fetch(`${url}/v1/chat/stream`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ message, session_id: session }) });

describe('a full disk under the default store', () => {
  it('makes the instance unready while history writes fail, and ready again once one goes through', async () => {
    const disk = await startSmallDisk(4);
    if (!disk) return;
    const server = await startSluiceProcess({ DATA_DIR: disk.dir, SIM_DELAY_MS: 0 }, disk.via);
    for (let i = 0; i < 3; i++) await drain(streamSseRoute(server.url, { message: `warm ${i}`, session_id: 'warm' }));
    disk.fill();
    // The first writes may still fit in space the database already holds; a turn soon is refused.
    let refused = 0;
    for (let i = 0; i < 20 && refused === 0; i++) {
      const turn = await startTurn(server.url, `big-${i}`, 'y'.repeat(20_000));
      await turn.text();
      if (turn.status === 503) refused++;
    }
    expect(refused).toBe(1);
    expect((await fetch(`${server.url}/ready`)).status).toBe(503);
    // The checkpointer (a worker moving the WAL into the database) cannot either: the writer takes over.
    await vi.waitFor(() => expect(server.output()).toContain('the SQLite checkpointer stopped'), { timeout: 10_000 });
    disk.free();
    await vi.waitFor(async () => expect((await fetch(`${server.url}/ready`)).status).toBe(200), { timeout: 10_000 });
    const after = await drain(streamSseRoute(server.url, { message: 'y'.repeat(20_000), session_id: 'after' }));
    expect(SseMessageData.parse(JSON.parse(after.at(-1)!.data)).done).toBe(true);
    // With space back, its next checkpoint works, and it takes over again from the writer.
    await vi.waitFor(() => expect(server.output()).toContain('the SQLite checkpointer works again'), { timeout: 10_000 });
    await server.stop();
  });

  it('a reply whose final message waits for space is stored by a clean stop once there is some', async () => {
    const disk = await startSmallDisk(4);
    if (!disk) return;
    const env = { DATA_DIR: disk.dir, SIM_DELAY_MS: 5 };
    const server = await startSluiceProcess(env, disk.via);
    const message = 'long '.repeat(300).trim();
    const frames: SseFrame[] = [];
    const reply = streamSseRoute(server.url, { message, session_id: 'pending' });
    for (let i = 0; i < 5; i++) frames.push((await reply.next()).value as SseFrame);
    disk.fill();
    for await (const frame of reply) frames.push(frame);
    const ending = SseErrorData.parse(JSON.parse(frames.at(-1)!.data));
    expect(ending.message).toMatch(/will be stored once the history store is back/);
    expect(ending.partial).toBe(simulatedDeltas(message).join(''));
    // Space comes back, and the instance is stopped before its retry timer comes round.
    disk.free();
    expect(await server.stop('SIGTERM')).toBe(0);
    const again = await startSluiceProcess(env, disk.via);
    const stored = (await history(again.url, 'pending')).messages.at(-1);
    expect(stored).toMatchObject({ role: 'assistant', status: 'complete', content: ending.partial });
    await again.stop();
  });
});
