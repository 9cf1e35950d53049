import type { ChatService } from '../../core/chat-service.ts';

/** What every procedure sees. `owner` names the tenant (the API key's id, or `anonymous`). */
export interface TRPCContext {
  readonly service: ChatService;
  readonly owner: string;
  readonly transport: 'trpc-ws' | 'trpc-http';
}
