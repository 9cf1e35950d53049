import type { StreamOutcome } from '../stream-check.ts';

/** One stream to request: the prompt, a fresh session, and the deltas the simulator will send. */
export interface StreamRequest {
  readonly message: string;
  readonly sessionId: string;
  readonly expected: readonly string[];
  /** A stream not finished by then counts as failed. */
  readonly timeoutMs: number;
}

/**
 * A simulated chat user. It owns its connection (a WebSocket, or HTTP connections from a keep-alive
 * agent) for its whole life and asks for one reply at a time.
 */
export interface User {
  stream(request: StreamRequest): Promise<StreamOutcome>;
  close(): Promise<void>;
}

/** A way to talk to one server under test. */
export interface LoadClient {
  user(): User;
  close(): Promise<void>;
}

export type ClientKind = 'sse-route' | 'openai' | 'raw-ws' | 'trpc-ws' | 'trpc-sse';
