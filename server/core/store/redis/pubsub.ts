import type { Cluster, Redis } from 'ioredis';

/** Messages between instances on named channels, whatever the topology. */
export interface PubSub {
  /**
   * Whether a script may publish on a channel itself (atomically with its writes). Not on a
   * cluster: a script may only touch its own slot, and a channel other instances listen on has
   * its own.
   */
  readonly publishInScripts: boolean;
  /** Calls `onMessage` with every message on `channel` from now on (once the subscription is made). */
  subscribe(channel: string, onMessage: (message: string) => void): void;
  publish(channel: string, message: string): Promise<void>;
  /** Calls `handler` whenever messages may have been missed (the subscription was made again). */
  onResubscribed(handler: () => void): () => void;
  close(): void;
}

/**
 * Pub/sub on one server (or the Sentinels' primary): a subscriber connection of its own, which
 * ioredis subscribes again after a reconnect; the messages published meanwhile are lost.
 */
export class ServerPubSub implements PubSub {
  readonly publishInScripts = true;
  readonly #sub: Redis;
  readonly #commands: Redis;
  readonly #handlers = new Map<string, (message: string) => void>();
  readonly #resubscribed = new Set<() => void>();

  constructor(subscriber: Redis, commands: Redis) {
    this.#sub = subscriber;
    this.#commands = commands;
    subscriber.on('message', (channel: string, message: string) => this.#handlers.get(channel)?.(message));
    let first = true;
    subscriber.on('ready', () => {
      // Every channel again, on every connection: ioredis makes again only the subscriptions that
      // were made, and a SUBSCRIBE queued while the connection was away fails with the first failed
      // attempt (commands are not retried). Subscribing twice to a channel is harmless.
      this.#subscribeAll();
      if (first) {
        first = false;
        return;
      }
      for (const handler of this.#resubscribed) handler();
    });
  }

  subscribe(channel: string, onMessage: (message: string) => void): void {
    this.#handlers.set(channel, onMessage);
    // Now if connected; otherwise at the next 'ready'.
    if (this.#sub.status === 'ready') this.#sub.subscribe(channel).catch(() => undefined);
  }

  #subscribeAll(): void {
    if (this.#handlers.size > 0) this.#sub.subscribe(...this.#handlers.keys()).catch(() => undefined);
  }

  async publish(channel: string, message: string): Promise<void> {
    await this.#commands.publish(channel, message);
  }

  onResubscribed(handler: () => void): () => void {
    this.#resubscribed.add(handler);
    return () => this.#resubscribed.delete(handler);
  }

  close(): void {
    this.#handlers.clear();
    this.#resubscribed.clear();
  }
}

/**
 * Pub/sub on a cluster, sharded (SPUBLISH / SSUBSCRIBE): a channel lives on the master of its slot
 * and its messages stay within that shard, instead of crossing the cluster bus to every node as
 * PUBLISH does. ioredis holds one subscriber connection per master and subscribes again after a
 * failover or a slot move (then `subscribersReady`); the messages published meanwhile are lost.
 */
export class ClusterPubSub implements PubSub {
  readonly publishInScripts = false;
  readonly #cluster: Cluster;
  readonly #handlers = new Map<string, (message: string) => void>();
  /** Channels asked for and not yet subscribed (the cluster was not ready, or the call failed). */
  readonly #pending = new Set<string>();
  readonly #resubscribed = new Set<() => void>();
  #closed = false;

  constructor(cluster: Cluster) {
    this.#cluster = cluster;
    cluster.on('smessage', (channel: string, message: string) => this.#handlers.get(channel)?.(message));
    cluster.on('ready', () => this.#subscribePending());
    cluster.on('subscribersReady', () => {
      this.#subscribePending();
      for (const handler of this.#resubscribed) handler();
    });
  }

  subscribe(channel: string, onMessage: (message: string) => void): void {
    this.#handlers.set(channel, onMessage);
    this.#pending.add(channel);
    this.#subscribePending();
  }

  #subscribePending(): void {
    if (this.#closed || this.#cluster.status !== 'ready') return;
    for (const channel of this.#pending) {
      this.#pending.delete(channel);
      this.#cluster.ssubscribe(channel).catch(() => {
        this.#pending.add(channel);
      });
    }
  }

  async publish(channel: string, message: string): Promise<void> {
    await this.#cluster.spublish(channel, message);
  }

  onResubscribed(handler: () => void): () => void {
    this.#resubscribed.add(handler);
    return () => this.#resubscribed.delete(handler);
  }

  close(): void {
    this.#closed = true;
    this.#handlers.clear();
    this.#resubscribed.clear();
  }
}
