import type { IncomingMessage } from 'node:http';
import { ChatCompletionRequest, SLUICE_SESSION_HEADER, type OpenAIChatMessage } from '../../../shared/openai.ts';
import { SessionId } from '../../../shared/session.ts';
import { SluiceError } from '../../core/errors.ts';
import type { ProviderMessage } from '../../core/providers/provider.ts';

/** A bad request on the OpenAI route, naming the field at fault as OpenAI's `param` does. */
export class InvalidParamError extends SluiceError {
  constructor(
    readonly param: string | null,
    message: string,
  ) {
    super('invalid_request', message);
  }
}

export function parseCompletionRequest(value: unknown): ChatCompletionRequest {
  const parsed = ChatCompletionRequest.safeParse(value);
  if (parsed.success) return parsed.data;
  const issue = parsed.error.issues[0]!;
  const param = issue.path.length > 0 ? issue.path.join('.') : null;
  throw new InvalidParamError(param, `${param ?? 'body'}: ${issue.message}`);
}

/** The session named by `X-Sluice-Session`, if any. */
export function sessionFrom(req: IncomingMessage): string | undefined {
  const raw = req.headers[SLUICE_SESSION_HEADER];
  if (raw === undefined) return undefined;
  const parsed = SessionId.safeParse(raw);
  if (!parsed.success) throw new InvalidParamError(null, `X-Sluice-Session: ${parsed.error.issues[0]!.message}`);
  return parsed.data;
}

const textOf = (m: OpenAIChatMessage): string => (typeof m.content === 'string' ? m.content : m.content.map((p) => p.text).join(''));

/** The conversation as the core takes it (`developer` is OpenAI's newer name for `system`). */
export function toProviderMessages(messages: readonly OpenAIChatMessage[]): ProviderMessage[] {
  return messages.map((m) => ({ role: m.role === 'developer' ? 'system' : m.role, content: textOf(m) }));
}

/**
 * In session mode the stored history is the context, so only the new user message is taken: the
 * last one, which must be from the user and not empty.
 */
export function newUserMessage(messages: readonly OpenAIChatMessage[]): string {
  const last = messages.at(-1)!;
  const at = `messages.${messages.length - 1}`;
  if (last.role !== 'user') throw new InvalidParamError(`${at}.role`, `${at}.role: the last message must be from the user`);
  const text = textOf(last);
  if (text.length === 0) throw new InvalidParamError(`${at}.content`, `${at}.content: must not be empty`);
  return text;
}

/**
 * Whether the client sends this request again after getting no answer: OpenAI's SDKs (Node and
 * Python) count their tries in `x-stainless-retry-count`, 0 on the first.
 */
export function isRetry(req: IncomingMessage): boolean {
  const count = Number(req.headers['x-stainless-retry-count']);
  return Number.isInteger(count) && count > 0;
}
