import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { applyWSSHandler } from '@trpc/server/adapters/ws';
import { afterEach, describe, expect, it } from 'vitest';
import WebSocket, { WebSocketServer } from 'ws';
import { simulatedDeltas } from '../server/core/providers/simulated.ts';
import { createSink } from '../server/transport/backpressure.ts';
import { HeldAnswers } from '../server/transport/held-answers.ts';
import { chatApi, type TRPCContext } from '../server/transport/trpc/context.ts';
import { createAppRouter } from '../server/transport/trpc/router.ts';
import { startServer, type TestServer } from './helpers/server.ts';

// Sluice serves tRPC's WebSocket protocol with a handler of its own (server/transport/trpc/ws-handler.ts).
// These tests hold it to tRPC's own adapter: the same raw messages go to Sluice and to
// `applyWSSHandler` serving the same router on the same chat service, and the answers must match
// message for message (generation ids and timestamps aside).

type Message = Record<string, unknown>;

/** A raw WebSocket that records every message it receives, parsed. */
class Peer {
  readonly messages: Array<Message | string> = [];
  readonly #ws: WebSocket;
  #waiters: Array<() => void> = [];

  constructor(url: string) {
    this.#ws = new WebSocket(url);
    this.#ws.on('message', (data) => {
      const text = data.toString();
      this.messages.push(text === 'PONG' || text === 'PING' ? text : (JSON.parse(text) as Message));
      for (const wake of this.#waiters) wake();
    });
    this.#ws.on('error', () => undefined);
  }

  async open(): Promise<this> {
    if (this.#ws.readyState !== WebSocket.OPEN) await once(this.#ws, 'open');
    return this;
  }

  send(value: unknown): void {
    this.#ws.send(typeof value === 'string' ? value : JSON.stringify(value));
  }

  /** The same text in a binary frame (tRPC's JSON encoder takes text frames only). */
  sendBinary(value: unknown): void {
    this.#ws.send(Buffer.from(typeof value === 'string' ? value : JSON.stringify(value)), { binary: true });
  }

  /** Resolves once `done(messages)` holds. */
  until(done: (messages: ReadonlyArray<Message | string>) => boolean, timeoutMs = 5000): Promise<void> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`timed out; got ${JSON.stringify(this.messages).slice(0, 2000)}`)), timeoutMs);
      const check = (): void => {
        if (!done(this.messages)) return;
        clearTimeout(timer);
        this.#waiters = this.#waiters.filter((w) => w !== check);
        resolve();
      };
      this.#waiters.push(check);
      check();
    });
  }

  closed(): Promise<unknown> {
    return this.#ws.readyState === WebSocket.CLOSED ? Promise.resolve() : once(this.#ws, 'close');
  }

  close(): void {
    this.#ws.close();
  }
}

const peers: Peer[] = [];
const references: WebSocketServer[] = [];
afterEach(async () => {
  for (const peer of peers.splice(0)) peer.close();
  for (const wss of references.splice(0)) {
    for (const client of wss.clients) client.terminate();
    await new Promise((resolve) => wss.close(resolve));
  }
});

/** tRPC's own WebSocket adapter, serving Sluice's router on the Sluice instance's chat service. */
async function referenceServer(sluice: TestServer['sluice']): Promise<string> {
  const wss = new WebSocketServer({ port: 0, host: '127.0.0.1' });
  references.push(wss);
  await once(wss, 'listening');
  applyWSSHandler({
    wss,
    router: createAppRouter({ ssePingMs: 0 }),
    // Sluice's WS_MAX_BATCH, at its default.
    maxBatchSize: 16,
    createContext: ({ req, res: ws }): TRPCContext => ({
      chat: chatApi(sluice.admission, sluice.service, new HeldAnswers(1_000_000_000)),
      answerTaken: () => Promise.resolve(),
      credential: undefined,
      transport: 'trpc-ws',
      metrics: sluice.metrics,
      sink: createSink({ buffered: () => ws.bufferedAmount, drains: req.socket, cut: () => ws.terminate(), highWaterBytes: 65536, sendTimeoutMs: 30000 }),
    }),
  });
  return `ws://127.0.0.1:${(wss.address() as AddressInfo).port}`;
}

async function both(): Promise<{ sluice: string; reference: string }> {
  const server = await startServer();
  return { sluice: `${server.url.replace(/^http/, 'ws')}/trpc`, reference: await referenceServer(server.sluice) };
}

async function peer(url: string): Promise<Peer> {
  const p = new Peer(url);
  peers.push(p);
  return p.open();
}

/** Generation ids and timestamps differ from run to run; everything else must not. */
function normalize(messages: ReadonlyArray<Message | string>): unknown {
  return JSON.parse(
    JSON.stringify(messages)
      .replace(/[0-9a-f]{32}/g, 'GEN')
      .replace(/TAG[ab]/g, 'TAG')
      .replace(/"createdAt":"[^"]+"/g, '"createdAt":"T"'),
  );
}

const subscription = (id: number | string, input: unknown, extra: Record<string, unknown> = {}) => ({
  id,
  method: 'subscription',
  params: { path: 'chat.stream', input: { json: input }, ...extra },
});
const stoppedFor = (id: number | string) => (messages: ReadonlyArray<Message | string>) =>
  messages.some((m) => typeof m === 'object' && m.id === id && ((m.result as Message | undefined)?.type === 'stopped' || 'error' in m));

/** Sends the same script to Sluice and to tRPC's adapter; returns both transcripts, normalized. */
async function exchange(script: (p: Peer, tag: string) => Promise<void>): Promise<{ sluice: unknown; reference: unknown }> {
  const urls = await both();
  const ours = await peer(urls.sluice);
  const theirs = await peer(urls.reference);
  await script(ours, 'a');
  await script(theirs, 'b');
  return { sluice: normalize(ours.messages), reference: normalize(theirs.messages) };
}

describe('tRPC WebSocket protocol: Sluice answers as tRPC adapter does', () => {
  it('a subscription: started, one tracked data message per event, stopped', async () => {
    const { sluice, reference } = await exchange(async (p, tag) => {
      p.send(subscription(1, { message: 'explain caching', sessionId: `proto-${tag}` }));
      await p.until(stoppedFor(1));
    });
    expect(sluice).toEqual(reference);
    const messages = sluice as Message[];
    expect(messages[0]).toEqual({ id: 1, result: { type: 'started' } });
    expect(messages.at(-1)).toEqual({ id: 1, result: { type: 'stopped' } });
    const data = messages.slice(1, -1);
    // `start` (position 0, naming the reply), then the 39 deltas and `done`.
    expect(data).toHaveLength(41);
    expect(data[0]).toEqual({ id: 1, result: { type: 'data', id: 'GEN:0', data: { json: { id: 'GEN:0', data: { type: 'start', replyId: 'GEN' } } } } });
    expect(data[1]).toEqual({
      id: 1,
      result: { type: 'data', id: 'GEN:1', data: { json: { id: 'GEN:1', data: { type: 'delta', delta: simulatedDeltas('explain caching')[0], index: 1 } } } },
    });
    expect(data.at(-1)).toEqual({
      id: 1,
      result: {
        type: 'data',
        id: 'GEN:40',
        data: { json: { id: 'GEN:40', data: { type: 'done', totalChunks: 39, usage: expect.objectContaining({ estimated: true }) } } },
      },
    });
  });

  it('JSON-RPC 2.0 ids and string ids are echoed; queries answer with data', async () => {
    const { sluice, reference } = await exchange(async (p, tag) => {
      p.send({ ...subscription('s-1', { message: 'hello there', sessionId: `rpc-TAG${tag}` }), jsonrpc: '2.0' });
      await p.until(stoppedFor('s-1'));
      p.send({ id: 2, jsonrpc: '2.0', method: 'query', params: { path: 'chat.history', input: { json: { sessionId: `rpc-TAG${tag}` } } } });
      await p.until((m) => m.some((x) => typeof x === 'object' && x.id === 2));
    });
    expect(sluice).toEqual(reference);
    const history = (sluice as Message[]).at(-1) as { result: { data: { json: { messages: unknown[] } } } };
    expect(history.result.data.json.messages).toHaveLength(2);
  });

  it('bad input, unknown procedures, duplicate ids, missing ids and malformed frames get the same typed errors', async () => {
    const { sluice, reference } = await exchange(async (p, tag) => {
      p.send(subscription(1, { message: 42 }));
      await p.until(stoppedFor(1));
      p.send({ id: 2, method: 'query', params: { path: 'chat.nothing', input: { json: {} } } });
      await p.until((m) => m.some((x) => typeof x === 'object' && x.id === 2));
      // Both in one batch: the second arrives while the first is still registered.
      p.send([subscription(3, { message: 'one', sessionId: `dup-${tag}` }), subscription(3, { message: 'two', sessionId: `dup2-${tag}` })]);
      await p.until((m) => m.filter((x) => typeof x === 'object' && x.id === 3 && ('error' in x || (x.result as Message).type === 'stopped')).length === 2);
      p.send({ id: null, method: 'query', params: { path: 'health' } });
      p.send('{not json');
      p.send({ id: 5, method: 'teleport', params: {} });
      p.sendBinary({ id: 6, method: 'query', params: { path: 'health', input: { json: null } } });
      p.sendBinary('PING');
      p.send('PING');
      await p.until((m) => m.includes('PONG') && m.filter((x) => typeof x === 'object' && x.id === null).length === 5);
    });
    // A PING is answered as it arrives (tRPC's adapter answers it before anything else), so its
    // PONG may overtake the answers to frames sent before it: the same answers, PONG apart.
    const [ours, theirs] = [sluice, reference] as [Array<Message | string>, Array<Message | string>];
    expect(ours.filter((m) => m !== 'PONG')).toEqual(theirs.filter((m) => m !== 'PONG'));
    expect([ours.filter((m) => m === 'PONG').length, theirs.filter((m) => m === 'PONG').length]).toEqual([1, 1]);
    const errors = (sluice as Message[]).filter((m) => typeof m === 'object' && 'error' in m) as Array<{
      id: unknown;
      error: { json: { data: { code: string } } };
    }>;
    expect(errors.map((e) => [e.id, e.error.json.data.code])).toEqual([
      [1, 'BAD_REQUEST'],
      [2, 'NOT_FOUND'],
      [3, 'BAD_REQUEST'],
      [null, 'PARSE_ERROR'],
      [null, 'PARSE_ERROR'],
      [null, 'PARSE_ERROR'],
      [null, 'PARSE_ERROR'],
      [null, 'PARSE_ERROR'],
    ]);
  });

  it('a batch of more calls than the limit (16) is refused whole: an error per call id, or one for the connection', async () => {
    const health = (id: number | string | null) => ({ id, method: 'query', params: { path: 'health', input: { json: null } } });
    const answered = (ids: Array<number | string>) => (m: ReadonlyArray<Message | string>) =>
      ids.every((id) => m.some((x) => typeof x === 'object' && x.id === id));
    const { sluice, reference } = await exchange(async (p) => {
      // Seventeen calls, a stop and a call without an id: each call with an id gets the refusal.
      p.send([...Array.from({ length: 17 }, (_, i) => health(i + 1)), { id: 1, method: 'subscription.stop' }, health(null)]);
      await p.until(answered(Array.from({ length: 17 }, (_, i) => i + 1)));
      p.send([...Array.from({ length: 17 }, () => ({ id: 7, method: 'subscription.stop' })), { ...health('rpc'), jsonrpc: '2.0' }]);
      await p.until(answered(['rpc']));
      // Nothing to answer by id: one error for the connection.
      p.send(Array.from({ length: 17 }, () => ({ id: 7, method: 'subscription.stop' })));
      await p.until((m) => m.some((x) => typeof x === 'object' && x.id === null));
      // At the limit, every call is served.
      p.send(Array.from({ length: 16 }, (_, i) => health(100 + i)));
      await p.until(answered(Array.from({ length: 16 }, (_, i) => 100 + i)));
    });
    expect(sluice).toEqual(reference);
    const messages = sluice as Array<{ id: unknown; error?: { json: { message: string; data: { code: string } } }; result?: unknown }>;
    const refusals = messages.slice(0, 17) as Array<{ id: unknown; error?: { json: { message: string; data: { code: string; sluiceCode: unknown } } } }>;
    expect(refusals.map((m) => [m.id, m.error?.json.data.code, m.error?.json.data.sluiceCode, m.error?.json.message])).toEqual(
      Array.from({ length: 17 }, (_, i) => [i + 1, 'BAD_REQUEST', 'invalid_request', 'Batch call exceeds maximum size']),
    );
    expect(messages[18]).toMatchObject({ id: null, error: { json: { data: { code: 'BAD_REQUEST' } } } });
    expect(messages.slice(19).map((m) => m.result)).toEqual(Array.from({ length: 16 }, () => ({ type: 'data', data: { json: { status: 'ok' } } })));
  });

  it('subscription.stop ends the stream with stopped and nothing after it', async () => {
    const server = await startServer({ SIM_DELAY_MS: 20 });
    const p = await peer(`${server.url.replace(/^http/, 'ws')}/trpc`);
    p.send(subscription(1, { message: 'explain caching', sessionId: 'stop' }));
    await p.until((m) => m.some((x) => typeof x === 'object' && (x.result as Message | undefined)?.type === 'data'));
    p.send({ id: 1, method: 'subscription.stop' });
    await p.until(stoppedFor(1));
    const last = p.messages.at(-1) as Message;
    expect(last).toEqual({ id: 1, result: { type: 'stopped' } });
    expect(p.messages.length).toBeLessThan(41);
  });
});

describe('tRPC WebSocket connection params', () => {
  it('with ?connectionParams=1 the first message carries the key; a malformed one is refused and the socket closed', async () => {
    const server = await startServer({ API_KEYS: 'sk-alice-0123456789abcdef' });
    const url = `${server.url.replace(/^http/, 'ws')}/trpc?connectionParams=1`;

    const good = await peer(url);
    good.send({ method: 'connectionParams', data: { apiKey: 'sk-alice-0123456789abcdef' } });
    good.send(subscription(1, { message: 'hi', sessionId: 'params' }));
    await good.until(stoppedFor(1));
    expect((good.messages.at(-2) as { result: { data: { json: { data: { type: string } } } } }).result.data.json.data.type).toBe('done');

    const wrong = await peer(url);
    wrong.send({ method: 'connectionParams', data: { apiKey: 'sk-wrong' } });
    wrong.send(subscription(1, { message: 'hi', sessionId: 'params' }));
    await wrong.until(stoppedFor(1));
    expect((wrong.messages[0] as { error: { json: { data: { code: string } } } }).error.json.data.code).toBe('UNAUTHORIZED');

    const malformed = await peer(url);
    malformed.send('{oops');
    await malformed.until((m) => m.length > 0);
    expect(malformed.messages[0]).toMatchObject({ id: null, error: { json: { data: { code: 'PARSE_ERROR' } } } });
    await malformed.closed();

    // tRPC's JSON encoder takes text frames only: the same params in a binary frame are malformed.
    const binary = await peer(url);
    binary.sendBinary({ method: 'connectionParams', data: { apiKey: 'sk-alice-0123456789abcdef' } });
    await binary.until((m) => m.length > 0);
    expect(binary.messages[0]).toMatchObject({ id: null, error: { json: { data: { code: 'PARSE_ERROR' } } } });
    await binary.closed();
  });
});
