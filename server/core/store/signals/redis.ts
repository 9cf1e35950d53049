import type { RedisConnection } from '../redis/connection.ts';
import type { Settlement, Signals } from '../signals.ts';

/** settle.lua's answers. */
const SETTLEMENTS: readonly Settlement[] = ['cancelled', 'settled', 'ended'];

/** Cancels as marks in keys (decided in scripts) and messages on one channel every instance subscribes to. */
export class RedisSignals implements Signals {
  readonly #c: RedisConnection;
  readonly #cancelHandlers = new Set<(generationId: string) => void>();
  readonly #channel: string;
  readonly #unsubscribeResubscribed: Array<() => void> = [];

  constructor(connection: RedisConnection) {
    this.#c = connection;
    this.#channel = connection.key('cancel');
    connection.pubsub.subscribe(this.#channel, (generationId) => {
      for (const handler of this.#cancelHandlers) handler(generationId);
    });
  }

  // Tagged with the generation: on a cluster, each mark lives on the shard of its generation.
  #mark(generationId: string): string {
    return this.#c.key('cx', `{${generationId}}`);
  }

  async requestCancel(generationId: string, ttlMs: number): Promise<boolean> {
    const { pubsub } = this.#c;
    // The script publishes with the mark when it may (one server); on a cluster the channel is in
    // another slot, so the message follows the mark: an instance that misses it still finds the mark.
    const channel = pubsub.publishInScripts ? this.#channel : '';
    const asked = await this.#c.call(async (redis) => (await redis.requestCancel(this.#mark(generationId), ttlMs, channel, generationId)) === 1);
    if (asked && !pubsub.publishInScripts) await this.#c.call(() => pubsub.publish(this.#channel, generationId));
    return asked;
  }

  settle(generationId: string, ttlMs: number, orphan?: { readonly endingTtlMs: number }): Promise<Settlement> {
    const mark = orphan ? ['o', orphan.endingTtlMs] : ['s', ttlMs];
    return this.#c.call(async (redis) => SETTLEMENTS[(await redis.settle(this.#mark(generationId), ttlMs, ...mark)) as number]!);
  }

  cancelled(generationIds: readonly string[]): Promise<string[]> {
    if (generationIds.length === 0) return Promise.resolve([]);
    // One GET each (auto-pipelined: one round trip), not MGET: on a cluster the marks are in different slots.
    return this.#c.call(async (redis) => {
      const marks = await Promise.all(generationIds.map((id) => redis.get(this.#mark(id))));
      return generationIds.filter((_, i) => marks[i] === 'c');
    });
  }

  onCancel(handler: (generationId: string) => void): () => void {
    this.#cancelHandlers.add(handler);
    return () => this.#cancelHandlers.delete(handler);
  }

  onResubscribed(handler: () => void): () => void {
    const unsubscribe = this.#c.pubsub.onResubscribed(handler);
    this.#unsubscribeResubscribed.push(unsubscribe);
    return unsubscribe;
  }

  close(): void {
    this.#cancelHandlers.clear();
    for (const unsubscribe of this.#unsubscribeResubscribed.splice(0)) unsubscribe();
  }
}
