import { afterEach } from 'vitest';
import { closeChatClient, createChatClient, type ChatClient } from '../../client/index.ts';
import type { StreamEvent } from '../../shared/index.ts';

const clients: ChatClient[] = [];
afterEach(async () => {
  for (const c of clients.splice(0)) await closeChatClient(c);
});

/** A typed client, closed after the test. */
export function chatClient(options: Parameters<typeof createChatClient>[0]): ChatClient {
  const c = createChatClient(options);
  clients.push(c);
  return c;
}

/** Every event of a stream, once it has ended. */
export async function collect(iterable: AsyncIterable<StreamEvent>): Promise<StreamEvent[]> {
  const events: StreamEvent[] = [];
  for await (const event of iterable) events.push(event);
  return events;
}
