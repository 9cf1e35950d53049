import { ChatMessage } from '../../../../shared/messages.ts';
import type { History } from '../history.ts';
import type { RedisConnection } from '../redis/connection.ts';

/** History in Redis lists, one per session. */
export class RedisHistory implements History {
  readonly #c: RedisConnection;

  constructor(connection: RedisConnection) {
    this.#c = connection;
  }

  read(sessionKey: string): Promise<ChatMessage[]> {
    return this.#c.call(async (redis) => {
      const raw = await redis.lrange(this.#c.key('h', sessionKey), 0, -1);
      return raw.map((entry) => ChatMessage.parse(JSON.parse(entry)));
    });
  }

  append(sessionKey: string, message: ChatMessage, keepLast: number): Promise<void> {
    return this.#c.call(async (redis) => {
      const key = this.#c.key('h', sessionKey);
      await redis.multi().rpush(key, JSON.stringify(message)).ltrim(key, -keepLast, -1).exec();
    });
  }

  // The connection belongs to the store, which closes it.
  async close(): Promise<void> {}
}
