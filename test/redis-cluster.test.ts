import calculateSlot from 'cluster-key-slot';
import type { Cluster } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { createSimulatedProvider, simulatedDeltas } from '../server/core/providers/simulated.ts';
import { SseErrorData, SseMessageData, type StreamEvent } from '../shared/index.ts';
import { recordingProvider } from './helpers/recording-provider.ts';
import { startCluster, type ClusterSetup } from './helpers/redis-topologies.ts';
import { startServer, type TestServer } from './helpers/server.ts';
import { cancel, drain, history, type SseFrame, streamSseRoute } from './helpers/sse.ts';
import { collectStream, stockClient } from './helpers/trpc-clients.ts';

// Sluice on a Redis Cluster of three masters: replies resumed, followed and cancelled across two
// instances whose keys land on different shards. (The store contracts run on the cluster too:
// test/store-contract.test.ts, test/history-contract.test.ts.)

const PROMPT = 'shard me';
const FULL = simulatedDeltas(PROMPT);
const LONG = 'long '.repeat(80).trim();

let cluster: ClusterSetup | undefined;
let admin: Cluster | undefined;
beforeAll(async () => {
  cluster = await startCluster();
  admin = cluster?.admin();
});
afterAll(() => admin?.disconnect());

/** Two instances on the cluster; undefined when redis-server is not installed. */
async function pair(settings: Record<string, string | number> = {}): Promise<[TestServer, TestServer] | undefined> {
  if (!cluster) return undefined;
  const env = { REDIS_CLUSTER_NODES: cluster.nodes, ...settings };
  return [await startServer(env), await startServer(env)];
}

describe('Redis Cluster (three masters)', () => {
  it('a turn taken on A is in B’s history; keys of one session share a slot, replies spread over the shards', async () => {
    const servers = await pair();
    if (!servers || !admin) return;
    const [a, b] = servers;
    for (let i = 0; i < 6; i++) {
      const frames = await drain(streamSseRoute(i % 2 ? b.url : a.url, { message: `turn ${i}`, session_id: `spread-${i}` }));
      expect(JSON.parse(frames.at(-1)!.data)).toMatchObject({ done: true });
    }
    const stored = await history(b.url, 'spread-0');
    expect(stored.messages.map((m) => [m.role, m.status])).toEqual([
      ['user', 'complete'],
      ['assistant', 'complete'],
    ]);
    // The event logs of these replies live on more than one master.
    const owners = new Set<string>();
    for (const node of admin.nodes('master')) if ((await node.keys('sluice:ev:*')).length > 0) owners.add(`${node.options.port}`);
    expect(owners.size).toBeGreaterThan(1);
  });

  it('masters that refuse writes (maxmemory) make the instance unready until they take them again, whichever shard its own keys are on', async () => {
    if (!cluster || !admin) return;
    const server = await startServer({ REDIS_CLUSTER_NODES: cluster.nodes });
    const masters = admin.nodes('master');
    const instances = new Set<string>();
    for (const node of masters) {
      for (const match of String(await node.client('LIST')).matchAll(/name=sluice-([0-9a-f]+)-/g)) instances.add(match[1]!);
    }
    expect(instances.size).toBe(1);
    // Every master is full but the one holding this instance's own key: a turn is refused on a
    // full one, and a readiness probe on the instance's own key would find its shard healthy.
    const slot = calculateSlot(`sluice:probe:${[...instances][0]!}`);
    const ranges = (await admin.call('CLUSTER', 'SLOTS')) as Array<[number, number, [string, number]]>;
    const spared = ranges.find(([from, to]) => slot >= from && slot <= to)![2][1];
    const full = masters.filter((node) => node.options.port !== spared);
    for (const node of full) {
      await node.config('SET', 'maxmemory-policy', 'noeviction');
      await node.config('SET', 'maxmemory', '1');
    }
    try {
      let refused = false;
      for (let i = 0; i < 10 && !refused; i++) {
        const start = await fetch(`${server.url}/v1/chat/stream`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ message: 'hi', session_id: `full-${i}` }),
        });
        await start.text();
        refused = start.status === 503;
      }
      expect(refused).toBe(true);
      expect((await fetch(`${server.url}/ready`)).status).toBe(503);
    } finally {
      for (const node of full) await node.config('SET', 'maxmemory', '0');
    }
    await vi.waitFor(async () => expect((await fetch(`${server.url}/ready`)).status).toBe(200), { timeout: 10_000 });
  });

  it('SSE route: a reply started on A resumes on B from its Last-Event-ID, exactly once', async () => {
    const recorder = recordingProvider(createSimulatedProvider({ delayMs: 15 }));
    if (!cluster) return;
    const env = { REDIS_CLUSTER_NODES: cluster.nodes, RESUME_GRACE_MS: 5000 };
    const a = await startServer(env, { provider: recorder.provider });
    const b = await startServer(env);
    const head: SseFrame[] = [];
    for await (const frame of streamSseRoute(a.url, { message: PROMPT, session_id: 'r' })) {
      head.push(frame);
      if (head.length === 5) break;
    }
    const tail = await drain(streamSseRoute(b.url, { message: PROMPT, session_id: 'r' }, { headers: { 'last-event-id': head.at(-1)!.id! } }));
    const deltas = [...head, ...tail].map((f) => SseMessageData.parse(JSON.parse(f.data))).filter((d) => !d.done);
    expect(deltas.map((d) => ('chunk_index' in d ? d.chunk_index : 0))).toEqual(FULL.map((_, i) => i + 1));
    expect(deltas.map((d) => d.delta).join('')).toBe(FULL.join(''));
    expect(JSON.parse(tail.at(-1)!.data)).toEqual({ delta: '', done: true, total_chunks: FULL.length });
    expect(recorder.calls).toHaveLength(1);
    expect(await history(b.url, 'r')).toEqual(await history(a.url, 'r'));
  });

  it('tRPC over WebSocket on B follows a reply running on A from its first event to done', async () => {
    const servers = await pair({ SIM_DELAY_MS: 10, RESUME_GRACE_MS: 5000 });
    if (!servers) return;
    const [a, b] = servers;
    const head = streamSseRoute(a.url, { message: PROMPT, session_id: 'w' });
    const first = (await head.next()).value as SseFrame;
    const { client } = stockClient(b.url, 'ws');
    const { events } = await collectStream(client, { message: PROMPT, sessionId: 'w', lastEventId: first.id!.replace(/:\d+$/, ':0') });
    const deltas = events.filter((e): e is Extract<StreamEvent, { type: 'delta' }> => e.type === 'delta');
    expect(deltas.map((e) => e.index)).toEqual(FULL.map((_, i) => i + 1));
    expect(events.at(-1)).toMatchObject({ type: 'done', totalChunks: FULL.length });
    await drain(head);
  });

  it('60 listeners on B follow one reply on A through the sharded channels, and all get it whole', async () => {
    const servers = await pair({ SIM_DELAY_MS: 10, RESUME_GRACE_MS: 5000 });
    if (!servers) return;
    const [a, b] = servers;
    const head = streamSseRoute(a.url, { message: PROMPT, session_id: 'many' });
    const first = (await head.next()).value as SseFrame;
    const all = await Promise.all(
      Array.from({ length: 60 }, () => drain(streamSseRoute(b.url, { message: PROMPT, session_id: 'many' }, { headers: { 'last-event-id': first.id! } }))),
    );
    const reply = first.id!.split(':')[0]!;
    // Events 2..40 and the ending (41), each once, in order.
    for (const frames of all) expect(frames.map((f) => f.id)).toEqual(FULL.map((_, i) => `${reply}:${i + 2}`));
    await drain(head);
  });

  it('a cancel sent to B stops the reply running on A (their keys on different shards); the answer true always holds', async () => {
    const servers = await pair({ SIM_DELAY_MS: 10, RESUME_GRACE_MS: 60_000 });
    if (!servers) return;
    const [a, b] = servers;
    let raced = 0;
    for (let i = 0; i < 12; i++) {
      const session = `cx-${i}`;
      const stream = drain(streamSseRoute(a.url, { message: LONG, session_id: session }));
      let said = false;
      const done = stream.then(() => true);
      while (!said && !(await Promise.race([done, Promise.resolve(false)]))) said = await cancel(b.url, session);
      const frames = await stream;
      if (!said) continue;
      raced++;
      const last = frames.at(-1)!;
      expect(last.event).toBe('error');
      expect(SseErrorData.parse(JSON.parse(last.data)).message).toBe('The reply was cancelled');
      await vi.waitFor(async () => expect((await history(b.url, session)).messages.at(-1)?.status).toBe('interrupted'));
    }
    expect(raced).toBeGreaterThan(6);
  });
});
