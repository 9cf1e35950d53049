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

/**
 * Node entry (`sluice-client`): fills in `ws` and the `eventsource` package where the runtime has
 * no WebSocket or EventSource (Node 20 has neither). Browsers get client/browser.ts.
 */
export function createChatClient(options: ChatClientOptions): ChatClient {
  return createWithImpls({
    ...options,
    WebSocket: options.WebSocket ?? globalThis.WebSocket ?? WebSocket,
    EventSource: options.EventSource ?? globalThis.EventSource ?? EventSource,
  });
}
