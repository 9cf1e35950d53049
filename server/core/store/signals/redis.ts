import type { RedisConnection } from '../redis/connection.ts';
import type { Signals } from '../signals.ts';

/** Cancels as marks in keys (decided in scripts) and messages on one channel every instance subscribes to. */
export class RedisSignals implements Signals {
  readonly #c: RedisConnection;
  readonly #cancelHandlers = new Set<(generationId: string) => void>();
  readonly #resubscribed = new Set<() => void>();
  readonly #channel: string;

  constructor(connection: RedisConnection) {
    this.#c = connection;
    this.#channel = connection.key('cancel');
    const sub = connection.subscriber;
    sub.subscribe(this.#channel).catch(() => undefined);
    sub.on('message', (from: string, generationId: string) => {
      if (from !== this.#channel) return;
      for (const handler of this.#cancelHandlers) handler(generationId);
    });
    // ioredis subscribes again by itself after a reconnect; what was published meanwhile is lost.
    let first = true;
    sub.on('ready', () => {
      if (first) {
        first = false;
        return;
      }
      for (const handler of this.#resubscribed) handler();
    });
  }

  #mark(generationId: string): string {
    return this.#c.key('cx', generationId);
  }

  requestCancel(generationId: string, ttlMs: number): Promise<boolean> {
    return this.#c.call(async (redis) => (await redis.requestCancel(this.#mark(generationId), ttlMs, this.#channel, generationId)) === 1);
  }

  settle(generationId: string, ttlMs: number): Promise<boolean> {
    return this.#c.call(async (redis) => (await redis.settle(this.#mark(generationId), ttlMs)) === 1);
  }

  cancelled(generationIds: readonly string[]): Promise<string[]> {
    if (generationIds.length === 0) return Promise.resolve([]);
    return this.#c.call(async (redis) => {
      const marks = await redis.mget(generationIds.map((id) => this.#mark(id)));
      return generationIds.filter((_, i) => marks[i] === 'c');
    });
  }

  onCancel(handler: (generationId: string) => void): () => void {
    this.#cancelHandlers.add(handler);
    return () => this.#cancelHandlers.delete(handler);
  }

  onResubscribed(handler: () => void): () => void {
    this.#resubscribed.add(handler);
    return () => this.#resubscribed.delete(handler);
  }

  close(): void {
    this.#cancelHandlers.clear();
    this.#resubscribed.clear();
  }
}
