import { ChatStreamInput } from '../../shared/chat-request.ts';
import { DEFAULT_SESSION_ID } from '../../shared/session.ts';
import { parseEventId } from '../../shared/stream-events.ts';
import type { Attachment, ChatService } from '../core/chat-service.ts';
import type { Credentials } from '../core/credentials.ts';
import { SluiceError } from '../core/errors.ts';
import type { RateLimiter } from '../core/rate-limiter.ts';
import { parseWith } from './parse-input.ts';

/** Where a request came in, for logs and metrics. */
export type TransportName = 'sse' | 'openai' | 'ui-chat' | 'trpc-ws' | 'trpc-http';

/** `chat.stream` as a client asked for it, whatever carried it. */
export interface ChatStreamRequest {
  /** The credential the client presented (API key or token), as its transport carries it. */
  readonly credential: string | undefined;
  /**
   * The input as the client sent it, with the resume point its transport carried (tRPC's links send
   * it as `lastEventId`, in the message or as SSE's `Last-Event-ID`); it is validated here.
   */
  readonly input: unknown;
  /**
   * The input still encoded (tRPC SSE's `input` query), decoded in its place once the caller is
   * admitted: a caller without a credential learns nothing of its input, as on every route.
   */
  readonly decodeInput?: () => unknown;
  readonly transport: TransportName;
  /** Aborted when the client leaves: a reply it started stops (after the resume window). */
  readonly signal?: AbortSignal | undefined;
}

/** A stream to open for an admitted owner: a new turn, or a resume after `lastEventId`. */
export interface OpenRequest {
  readonly message: string;
  readonly sessionId: string | undefined;
  readonly lastEventId: string | undefined;
  /** How the client named the resume point, for the error message when it is malformed. */
  readonly lastEventIdField: string;
  readonly transport: TransportName;
  /** Start with a `start` event naming the reply (the tRPC transports, whose links resume by event id). */
  readonly announce?: boolean;
}

export interface AdmissionOptions {
  readonly service: ChatService;
  readonly credentials: Credentials;
  readonly rateLimiter: RateLimiter;
}

/**
 * The one way in. Every route and transport asks here who the caller is (credential, then rate
 * limit), and every transport that streams opens `chat.stream` here (then input, then the resume
 * point, then the stream): a rule added here holds everywhere, with the same answer. Failures are
 * SluiceErrors; each transport maps them once, to its own wire.
 */
export class Admission {
  readonly #o: AdmissionOptions;

  constructor(options: AdmissionOptions) {
    this.#o = options;
  }

  /** The owner a credential names, counted against its rate limit. */
  async owner(credential: string | undefined): Promise<string> {
    const owner = await this.#o.credentials.ownerOf(credential);
    if (!owner) throw new SluiceError('unauthorized');
    await this.#o.rateLimiter.check(owner);
    return owner;
  }

  /** `chat.stream` from a raw request: credential, rate limit, input, resume point, then the stream. */
  async chatStream(request: ChatStreamRequest): Promise<Attachment> {
    const owner = await this.owner(request.credential);
    const input = parseWith(ChatStreamInput, request.decodeInput ? request.decodeInput() : request.input);
    return this.open(
      owner,
      {
        message: input.message,
        sessionId: input.sessionId,
        lastEventId: input.lastEventId || undefined,
        lastEventIdField: 'lastEventId',
        transport: request.transport,
        announce: true,
      },
      request.signal,
    );
  }

  /** Opens a stream for an owner already admitted (routes that read their own body shape). */
  async open(owner: string, request: OpenRequest, signal?: AbortSignal): Promise<Attachment> {
    const { service } = this.#o;
    if (request.lastEventId !== undefined) {
      const from = parseEventId(request.lastEventId);
      if (!from) throw new SluiceError('invalid_request', `${request.lastEventIdField}: must look like "<generation>:<seq>"`);
      return service.attach(owner, from, signal, request.transport);
    }
    return service.start(
      {
        owner,
        sessionId: request.sessionId ?? DEFAULT_SESSION_ID,
        message: request.message,
        transport: request.transport,
        announce: request.announce ?? false,
      },
      signal,
    );
  }
}
