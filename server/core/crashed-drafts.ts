import type { Logger } from 'pino';
import type { History } from './store/history.ts';
import type { ProviderMessage } from './providers/provider.ts';
import { estimateUsage } from './usage.ts';

/** A history that can list the drafts nothing finished (the SQL stores). */
export interface DraftedHistory extends History {
  drafts(limit?: number): Promise<Array<{ sessionKey: string; replyId: string }>>;
}

/**
 * Ends the replies a crash left as drafts, in a store that only this process writes (the embedded
 * SQLite: one instance per file, so no draft there belongs to a reply still running). Each draft
 * becomes its reply's final `interrupted` message, with the usage of its text estimated as the
 * reply itself would have (the provider's preamble and the messages before it were its prompt): an interrupted reply keeps the
 * usage of what it produced, whatever interrupted it. Run before the server takes requests.
 */
export async function endCrashedDrafts(
  history: DraftedHistory,
  options: { readonly keepLast: number; readonly logger: Logger; readonly preamble?: readonly ProviderMessage[] | undefined },
): Promise<number> {
  let ended = 0;
  // The store lists them a bounded number at a time; each is looked at once, so one that cannot
  // be ended (no longer read back) does not bring the same list back for ever.
  const seen = new Set<string>();
  for (;;) {
    const fresh = (await history.drafts()).filter(({ sessionKey, replyId }) => !seen.has(`${sessionKey}\u0000${replyId}`));
    if (fresh.length === 0) break;
    for (const { sessionKey, replyId } of fresh) {
      seen.add(`${sessionKey}\u0000${replyId}`);
      const messages = await history.read(sessionKey);
      const at = messages.findIndex((message) => message.draftOf === replyId);
      const draft = messages[at];
      if (!draft) continue;
      const usage = await estimateUsage([...(options.preamble ?? []), ...messages.slice(0, at)], draft.content);
      await history.append(
        sessionKey,
        { role: 'assistant', content: draft.content, status: 'interrupted', createdAt: draft.createdAt, ...(usage ? { usage } : {}) },
        { keepLast: options.keepLast, replyId },
      );
      ended++;
    }
  }
  if (ended > 0) options.logger.info({ replies: ended }, 'ended the replies a crash left unfinished, with their usage');
  return ended;
}
