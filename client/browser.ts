/**
 * Browser entry of the typed client (`sluice-client/browser`): the runtime's own WebSocket and
 * EventSource, nothing from Node. It exports what the Node entry (client/index.ts) exports.
 */
export type { AppRouter, SluiceErrorShape, TrackedStreamEvent } from '../shared/app-router.ts';
export type { ChatClient, ChatClientOptions, GetToken, Transport } from './create-chat-client.ts';
export { chatClientTransport, closeChatClient, createChatClient } from './create-chat-client.ts';
export { streamChat, type StreamChatRequest } from './stream-chat.ts';
export { ReplyTimer, formatReplyStats, type ReplyStats } from './reply-stats.ts';
export { uiChatFetch } from './ui-chat-fetch.ts';
export type { UIChatMetadata, UIChatUsage } from '../shared/ui-chat.ts';
export type { StreamEvent, ReplyEvent, ChatMessage, SessionHistory, ErrorCode } from '../shared/index.ts';
