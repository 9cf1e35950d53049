import type { ChatMessage } from '../../shared/messages.ts';
import { formatReplyStats } from '../reply-stats.ts';
import type { ReplyOutcome } from './reply.ts';

export interface Style {
  dim(text: string): string;
  bold(text: string): string;
  red(text: string): string;
}

/** ANSI styles when the stream is a terminal and NO_COLOR is not set; plain text otherwise. */
export function styleFor(stream: NodeJS.WriteStream, env: Record<string, string | undefined>): Style {
  const on = stream.isTTY === true && !env.NO_COLOR;
  const wrap = (open: string, close: string) => (text: string) => (on ? `\x1b[${open}m${text}\x1b[${close}m` : text);
  return { dim: wrap('2', '22'), bold: wrap('1', '22'), red: wrap('31', '39') };
}

export const transportLabel = (transport: 'ws' | 'sse' | 'pending'): string => (transport === 'ws' ? 'WebSocket' : transport === 'sse' ? 'SSE' : 'connecting');

/** The line after a reply: how it ended and how fast it came. */
export function outcomeLine(outcome: ReplyOutcome): string {
  switch (outcome.kind) {
    case 'complete':
      return formatReplyStats(outcome.stats);
    case 'cancelled':
      return outcome.by === 'user' ? `cancelled · ${formatReplyStats(outcome.stats)}` : `${outcome.code} on the server · ${formatReplyStats(outcome.stats)}`;
    case 'failed':
      return `error: ${outcome.code}: ${outcome.message} · ${formatReplyStats(outcome.stats)}`;
    case 'refused':
      return `error: ${outcome.code}: ${outcome.message}`;
    case 'connection':
      return `error: cannot reach the server: ${outcome.message}`;
  }
}

/** `/history`: one entry per message, `N. role [status]: content`, continuation lines indented. */
export function historyText(sessionId: string, messages: readonly ChatMessage[]): string {
  if (messages.length === 0) return `Session ${sessionId} has no messages yet.`;
  const lines = [`Session ${sessionId}: ${messages.length} message${messages.length === 1 ? '' : 's'}`];
  messages.forEach((m, i) => {
    const head = `${i + 1}. ${m.role} [${m.status}]: `;
    const [first = '', ...rest] = m.content.split(/\r?\n/);
    lines.push(`  ${head}${first}`);
    for (const line of rest) lines.push(`  ${' '.repeat(head.length)}${line}`);
  });
  return lines.join('\n');
}
