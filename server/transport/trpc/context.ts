import type { SessionHistory } from '../../../shared/messages.ts';
import type { Attachment, ChatService } from '../../core/chat-service.ts';
import type { Admission, ChatStreamRequest } from '../admission.ts';
import type { Sink } from '../backpressure.ts';
import type { StreamMetrics } from '../drain.ts';
import { historyBytes, type HeldAnswers } from '../held-answers.ts';
import type { AnswerBudget } from './answer-budget.ts';

/** What the procedures need of Sluice: the way in, and the chat service's other calls. */
export interface ChatApi {
  /** The owner a credential names, counted against its rate limit (throws when refused). */
  owner(credential: string | undefined): Promise<string>;
  /** `chat.stream`'s one way in (see Admission). */
  chatStream(request: ChatStreamRequest): Promise<Attachment>;
  /** A page of history, held for its reader (see HeldAnswers) until `taken()` settles. */
  history(owner: string, sessionId: string, page: { limit?: number; before?: number }, taken: () => Promise<unknown>): Promise<SessionHistory>;
  cancel(owner: string, sessionId: string, replyId?: string): Promise<boolean>;
  deleteSession(owner: string, sessionId: string): Promise<boolean>;
}

/** What every procedure sees. */
export interface TRPCContext {
  readonly chat: ChatApi;
  /** The credential the client presented (an API key), checked by each call through `chat.owner`. */
  readonly credential: string | undefined;
  readonly transport: 'trpc-ws' | 'trpc-http';
  /** Flow control towards this client. */
  readonly sink: Sink;
  readonly metrics: StreamMetrics;
  /** Over HTTP, what one request (a batch) may be answered with; over WebSocket each call is paced by its reader. */
  readonly answers?: AnswerBudget;
  /** Settles once this call's answer, about to be written, has been taken by the reader (or the reader is gone). */
  readonly answerTaken: () => Promise<unknown>;
}

export function chatApi(admission: Admission, service: ChatService, held: HeldAnswers): ChatApi {
  return {
    owner: (credential) => admission.owner(credential),
    chatStream: (request) => admission.chatStream(request),
    history: (owner, sessionId, page, taken) => held.answer(owner, () => service.history(owner, sessionId, page), historyBytes, taken),
    cancel: (owner, sessionId, replyId) => service.cancel(owner, sessionId, replyId),
    deleteSession: (owner, sessionId) => service.deleteSession(owner, sessionId),
  };
}
