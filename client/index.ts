import { EventSource } from 'eventsource';
import WebSocket from 'ws';
import { createChatClient as createWithImpls, type ChatClient, type ChatClientOptions } from './create-chat-client.ts';

export type { AppRouter, SluiceErrorShape, TrackedStreamEvent } from '../shared/app-router.ts';
export type { ChatClient, ChatClientOptions, GetToken, Transport } from './create-chat-client.ts';
export { chatClientTransport, closeChatClient } from './create-chat-client.ts';
export { streamChat, type StreamChatRequest } from './stream-chat.ts';
export { ReplyTimer, formatReplyStats, type ReplyStats } from './reply-stats.ts';
export { uiChatFetch } from './ui-chat-fetch.ts';
export type { UIChatMetadata, UIChatUsage } from '../shared/ui-chat.ts';
export type { StreamEvent, ReplyEvent, ChatMessage, SessionHistory, ErrorCode } from '../shared/index.ts';

/** How long a closing WebSocket waits for the server's close frame before it lets go of the socket. */
const CLOSE_WAIT_MS = 2000;

/**
 * `ws`, waiting at most CLOSE_WAIT_MS for the peer's close frame. The client closes a connection
 * whose pong did not come (a path that died without a FIN): that peer will not answer, and ws's own
 * wait, 30 s, would keep the reply from resuming for as long.
 */
class NodeWebSocket extends WebSocket {
  constructor(address: string | URL, protocols?: string | string[]) {
    // `closeTimeout` is ws's (8.23), not yet in its type definitions.
    const options: WebSocket.ClientOptions & { closeTimeout: number } = { closeTimeout: CLOSE_WAIT_MS };
    super(address, protocols, options);
  }
}

/**
 * Node entry (`sluice-client`): fills in `ws` and the `eventsource` package where the runtime has
 * no WebSocket or EventSource (Node 20 has neither). Browsers get client/browser.ts.
 */
export function createChatClient(options: ChatClientOptions): ChatClient {
  return createWithImpls({
    ...options,
    WebSocket: options.WebSocket ?? globalThis.WebSocket ?? NodeWebSocket,
    EventSource: options.EventSource ?? globalThis.EventSource ?? EventSource,
  });
}
