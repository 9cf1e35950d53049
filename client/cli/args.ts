import { parseArgs } from 'node:util';
import type { Transport } from '../create-chat-client.ts';
import { SESSION_ID_PATTERN } from '../../shared/session-id.ts';
import { EXIT } from './exit-codes.ts';

export interface CliOptions {
  readonly url: string;
  readonly transport: Transport;
  /** Undefined: a new session id is made up. */
  readonly session: string | undefined;
  readonly apiKey: string | undefined;
  /** A signed-in user's token (a JWT), instead of an API key. */
  readonly token: string | undefined;
  /** One-shot mode: send this, print the reply, exit. */
  readonly message: string | undefined;
  /** No transport line or statistics on stderr. */
  readonly quiet: boolean;
}

export type ParsedArgs = { readonly kind: 'run'; readonly options: CliOptions } | { readonly kind: 'help' };

export class UsageError extends Error {
  override readonly name = 'UsageError';
}

export const DEFAULT_URL = 'http://127.0.0.1:8000';

export const USAGE = `Usage: sluice-chat [options]        (or: npm run chat -- [options])

Chat with a Sluice server in the terminal; each reply streams in as it is produced.

Options:
  --url URL              server base URL (default ${DEFAULT_URL}; env SLUICE_URL)
  --transport T          ws, sse or auto (default auto: WebSocket, SSE when it is blocked)
  --session ID           session to talk in (default: a new one, printed at start)
  --key KEY              API key (env SLUICE_API_KEY; keeps it out of the process list)
  --token TOKEN          a user's token (JWT) instead of a key (env SLUICE_TOKEN)
  -m, --message TEXT     one-shot: send TEXT, print the reply on stdout, exit
  -q, --quiet            one-shot: no transport line or statistics on stderr
  -h, --help             this help

In the chat: Enter sends; Ctrl-C stops a running reply (it is cancelled on the server), and at
the prompt quits, as do Ctrl-D and /quit. /history shows the session's messages, /help the commands.

Exit codes: ${EXIT.ok} reply completed (or you quit) · ${EXIT.failed} reply failed · ${EXIT.usage} bad flags ·
${EXIT.connection} server unreachable or connection lost · ${EXIT.refused} message refused (e.g. session busy) ·
${EXIT.cancelled} reply cancelled or interrupted by the server · ${EXIT.interrupted} stopped (Ctrl-C, SIGTERM, stdout closed)
`;

/** Parses argv (without node and the script) and the environment; throws UsageError. */
export function parseCliArgs(argv: readonly string[], env: Record<string, string | undefined> = {}): ParsedArgs {
  let values;
  try {
    ({ values } = parseArgs({
      args: [...argv],
      strict: true,
      allowPositionals: false,
      options: {
        url: { type: 'string' },
        transport: { type: 'string' },
        session: { type: 'string' },
        key: { type: 'string' },
        token: { type: 'string' },
        message: { type: 'string', short: 'm' },
        quiet: { type: 'boolean', short: 'q' },
        help: { type: 'boolean', short: 'h' },
      },
    }));
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
  if (values.help) return { kind: 'help' };

  const url = values.url ?? env.SLUICE_URL ?? DEFAULT_URL;
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new UsageError(`--url must be an absolute URL such as ${DEFAULT_URL}, got "${url}"`);
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') {
    throw new UsageError(`--url must start with http:// or https://, got "${url}"`);
  }
  const transport = values.transport ?? 'auto';
  if (transport !== 'ws' && transport !== 'sse' && transport !== 'auto') {
    throw new UsageError(`--transport must be ws, sse or auto, got "${transport}"`);
  }
  if (values.session !== undefined && !SESSION_ID_PATTERN.test(values.session)) {
    throw new UsageError('--session must be 1-128 characters of letters, digits, ".", "_", ":" or "-", other than "." and ".."');
  }
  if (values.message !== undefined && values.message.trim() === '') {
    throw new UsageError('--message must not be empty');
  }
  const apiKey = values.key ?? (env.SLUICE_API_KEY || undefined);
  const token = values.token ?? (env.SLUICE_TOKEN || undefined);
  if (apiKey !== undefined && token !== undefined) throw new UsageError('give --key (SLUICE_API_KEY) or --token (SLUICE_TOKEN), not both');
  return {
    kind: 'run',
    options: {
      url,
      transport,
      session: values.session,
      apiKey,
      token,
      message: values.message,
      quiet: values.quiet ?? false,
    },
  };
}
