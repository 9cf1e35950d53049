/**
 * Browser entry of the typed client: the runtime's own WebSocket and EventSource, nothing from
 * Node (client/index.ts is the Node entry, which pulls in `ws` and `eventsource`).
 */
export type { AppRouter } from '../server/router-type.ts';
export type { ChatClient, ChatClientOptions, Transport } from './create-chat-client.ts';
export { chatClientTransport, closeChatClient, createChatClient } from './create-chat-client.ts';
export { streamChat, type StreamChatRequest } from './stream-chat.ts';
export { ReplyTimer, formatReplyStats, type ReplyStats } from './reply-stats.ts';
export { uiChatFetch } from './ui-chat-fetch.ts';
export type { UIChatMetadata, UIChatUsage } from '../shared/ui-chat.ts';
export type { StreamEvent, ReplyEvent, ChatMessage, SessionHistory } from '../shared/index.ts';
