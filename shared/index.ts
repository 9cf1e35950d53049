export * from './errors.ts';
export * from './session.ts';
export * from './messages.ts';
export * from './stream-events.ts';
export * from './chat-request.ts';
export * from './sse-route.ts';
export * from './openai.ts';
export * from './ui-chat.ts';
