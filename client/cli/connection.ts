import { randomUUID } from 'node:crypto';
import { chatClientTransport, closeChatClient, createChatClient, type ChatClient } from '../index.ts';
import type { CliOptions } from './args.ts';
import { networkReason } from './reply.ts';

/** Prints "connection lost" once per drop and "reconnected" once per return, whichever source reports it. */
export class ConnectionWatch {
  private down = false;
  /** A reply is streaming: the reconnect resumes it. */
  replying = false;
  /** Where notices go; set by the mode that runs. */
  notice: (text: string) => void = () => undefined;

  lost(): void {
    if (this.down) return;
    this.down = true;
    this.notice('connection lost, reconnecting…');
  }

  back(): void {
    if (!this.down) return;
    this.down = false;
    this.notice(this.replying ? 'reconnected, resuming' : 'reconnected');
  }
}

export interface Connection {
  readonly client: ChatClient;
  readonly watch: ConnectionWatch;
  transport(): 'ws' | 'sse' | 'pending';
  close(): Promise<void>;
}

/** The typed client for the options, wired so that drops and reconnects reach `watch`. */
export function connect(options: CliOptions): Connection {
  const watch = new ConnectionWatch();
  let transportReports = 0;
  const client = createChatClient({
    url: options.url,
    transport: options.transport,
    ...(options.apiKey ? { apiKey: options.apiKey } : {}),
    ...(options.token ? { getToken: () => options.token } : {}),
    // The first report is the transport chosen; later ones are WebSocket reconnects.
    onTransport: () => {
      if (transportReports++ > 0) watch.back();
    },
    onDisconnect: () => watch.lost(),
  });
  return { client, watch, transport: () => chatClientTransport(client), close: () => closeChatClient(client) };
}

export type Preflight = { readonly ok: true } | { readonly ok: false; readonly reason: string; readonly refused: boolean };

/** Asks the server for `health` over the chosen transport (deciding 'auto'); fails after `timeoutMs`. */
export async function preflight(client: ChatClient, timeoutMs: number, interrupt: AbortSignal): Promise<Preflight> {
  const controller = new AbortController();
  const { signal } = controller;
  const timer = setTimeout(() => controller.abort(), timeoutMs);
  const onInterrupt = (): void => controller.abort();
  interrupt.addEventListener('abort', onInterrupt, { once: true });
  try {
    await client.health.query(undefined, { signal });
    return { ok: true };
  } catch (error) {
    if (interrupt.aborted) return { ok: false, reason: 'interrupted', refused: false };
    if (signal.aborted) return { ok: false, reason: `no answer within ${Math.round(timeoutMs / 1000)} s`, refused: false };
    const e = error as { message?: string; data?: { code?: string } | null };
    if (e.data?.code) return { ok: false, reason: `${e.data.code}: ${e.message}`, refused: true };
    return { ok: false, reason: networkReason(error), refused: false };
  } finally {
    clearTimeout(timer);
    interrupt.removeEventListener('abort', onInterrupt);
  }
}

/** A fresh session id, so that each run starts a new conversation unless --session names one. */
export const newSessionId = (): string => `cli-${randomUUID().slice(0, 8)}`;
