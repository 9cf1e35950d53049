import type {
  TRPC_ERROR_CODE_KEY,
  TRPC_ERROR_CODE_NUMBER,
  TRPCBuiltRouter,
  TRPCMutationProcedure,
  TRPCQueryProcedure,
  TRPCSubscriptionProcedure,
} from '@trpc/server';
import type { CancelInput, CancelResult, ChatStreamInput, DeleteResult, HealthStatus, HistoryInput, SessionRef } from './chat-request.ts';
import type { ErrorCode } from './errors.ts';
import type { SessionHistory } from './messages.ts';
import type { StreamEvent } from './stream-events.ts';

/**
 * Sluice's tRPC router as a client sees it: its procedures, their inputs and outputs, and its
 * errors, without the server's context. Typed clients are built against this type (the
 * `sluice-client` package ships it, with nothing from the server); the server's router is held to
 * it at compile time (server/router-type.ts), so the two cannot drift apart.
 */
export type AppRouter = TRPCBuiltRouter<
  Root,
  {
    health: TRPCQueryProcedure<Procedure<void, HealthStatus>>;
    chat: {
      /** Streams one reply: its events, each with the id to resume after (`lastEventId`). */
      stream: TRPCSubscriptionProcedure<Procedure<ChatStreamInput, AsyncIterable<TrackedStreamEvent, void>>>;
      /** The session's messages, oldest first (a page of them with `limit` / `before`). */
      history: TRPCQueryProcedure<Procedure<HistoryInput, SessionHistory>>;
      /** Stops the session's running reply (only if it is `replyId`, when given), wherever it runs. */
      cancel: TRPCMutationProcedure<Procedure<CancelInput, CancelResult>>;
      /** Deletes the session and its history (its running reply is cancelled first). */
      deleteSession: TRPCMutationProcedure<Procedure<SessionRef, DeleteResult>>;
    };
  }
>;

/** A stream event as the client receives it, with the id a resume starts after. */
export interface TrackedStreamEvent {
  id: string;
  data: StreamEvent;
}

/** What a tRPC error from Sluice carries: tRPC's shape, and Sluice's own code in `data.sluiceCode`. */
export interface SluiceErrorShape {
  data: {
    sluiceCode: ErrorCode | null;
    code: TRPC_ERROR_CODE_KEY;
    httpStatus: number;
    path?: string;
  };
  message: string;
  code: TRPC_ERROR_CODE_NUMBER;
}

interface Root {
  ctx: object;
  meta: object;
  errorShape: SluiceErrorShape;
  transformer: true;
}

interface Procedure<Input, Output> {
  input: Input;
  output: Output;
  meta: object;
  errorShape: SluiceErrorShape;
}
