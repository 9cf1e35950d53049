/** Exit codes of `sluice-chat` (documented in the README and in `--help`). */
export const EXIT = {
  /** The reply completed (one-shot), or the user quit (interactive). */
  ok: 0,
  /** The reply failed after it started (an `error` event such as `upstream_error`). */
  failed: 1,
  /** Bad flags. */
  usage: 2,
  /** The server could not be reached, or the connection was lost for good. */
  connection: 3,
  /** The server refused the message before replying (`session_busy`, `invalid_request`, `unauthorized`, `rate_limited`, ...). */
  refused: 4,
  /** The reply was cancelled or interrupted on the server's side (someone cancelled the session, or the server shut down). */
  cancelled: 5,
  /** Ctrl-C (SIGINT or SIGTERM), or a closed stdout, stopped the reply (it was cancelled on the server). */
  interrupted: 130,
} as const;

export type ExitCode = (typeof EXIT)[keyof typeof EXIT];
