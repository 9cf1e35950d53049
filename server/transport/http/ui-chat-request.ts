import { SessionId } from '../../../shared/session.ts';
import { UIChatMessage } from '../../../shared/ui-chat.ts';
import { SluiceError } from '../../core/errors.ts';

// What the UI chat routes read of a request: the new user turn of a posted chat, a chat id in a path.

const invalid = (message: string): SluiceError => new SluiceError('invalid_request', message);

/**
 * The text of the chat's new turn: its last message, which must be the user's and hold only text
 * parts. The messages before it are not read: the session's stored history is the context.
 */
export function newTurnText(messages: readonly unknown[]): string {
  const at = messages.length - 1;
  const parsed = UIChatMessage.safeParse(messages[at]);
  if (!parsed.success) throw invalid(`messages.${at}: must be a UI message ({ "role", "parts" })`);
  const last = parsed.data;
  if (last.role !== 'user') {
    throw invalid(`messages.${at}.role: the last message must be the user's new message, got "${last.role}"`);
  }
  let text = '';
  for (const [i, part] of last.parts.entries()) {
    if (part.type !== 'text' || part.text === undefined) {
      throw invalid(`messages.${at}.parts.${i}: only text parts are supported, got "${part.type.slice(0, 64)}"`);
    }
    text += part.text;
  }
  if (text.length === 0) throw invalid(`messages.${at}.parts: the message has no text`);
  return text;
}

/** The chat (session) id in a route's path. */
export function chatIdFrom(params: readonly string[]): string {
  let raw: string;
  try {
    raw = decodeURIComponent(params[0] ?? '');
  } catch {
    raw = '';
  }
  const parsed = SessionId.safeParse(raw);
  if (!parsed.success) throw invalid(`chatId: ${parsed.error.issues[0]?.message ?? 'invalid'}`);
  return parsed.data;
}
