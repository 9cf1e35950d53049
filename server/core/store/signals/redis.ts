import type { RedisConnection } from '../redis/connection.ts';
import type { Signals } from '../signals.ts';

/** Cancels over Redis pub/sub, on one channel every instance subscribes to. */
export class RedisSignals implements Signals {
  readonly #c: RedisConnection;
  readonly #cancelHandlers = new Set<(generationId: string) => void>();
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
  }

  publishCancel(generationId: string): Promise<void> {
    return this.#c.call(async (redis) => {
      await redis.publish(this.#channel, generationId);
    });
  }

  onCancel(handler: (generationId: string) => void): () => void {
    this.#cancelHandlers.add(handler);
    return () => this.#cancelHandlers.delete(handler);
  }

  close(): void {
    this.#cancelHandlers.clear();
  }
}
