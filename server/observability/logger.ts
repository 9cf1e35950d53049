import { pino, type Logger } from 'pino';

// Log lines are JSON on stdout, written off the event loop (sonic-boom, asynchronously) and in
// batches: a write goes out once 4 KB are waiting, or every 100 ms. Writing each line as it came
// cost a round trip through libuv's thread pool (and its lock) per line; with one reply at a time,
// the two lines of a reply were a fifth of the server's CPU. Lines still waiting are written when
// the process exits (pino flushes the destination on exit).
const BATCH_BYTES = 4096;
const FLUSH_EVERY_MS = 100;
/** Characters of an error's message, and of its stack, that a line keeps. */
const MAX_ERROR_TEXT = 2000;
/** Causes followed, from an error to the error that caused it. */
const MAX_CAUSES = 3;
/**
 * Shorter secrets are not looked for in lines: a short one is likely a word the lines hold anyway
 * (a password `sluice` would rewrite every line's service, and tell the logs' readers the secret).
 * Secrets of digits only neither: they could match inside a number, and the line would not parse.
 */
const MIN_SECRET_CHARS = 12;

/**
 * `secrets`: the operator's (the upstream's key, store passwords), replaced in every line by
 * `[redacted]` wherever a library put them (an upstream that echoes its key in an error, say).
 */
export function createLogger(level: string, base: Record<string, unknown>, secrets: readonly string[] = []): Logger {
  const scrub = scrubber(secrets);
  return pino(
    { level, base, serializers: { err: serializeError }, ...(scrub ? { hooks: { streamWrite: scrub } } : {}) },
    pino.destination({ dest: 1, sync: false, minLength: BATCH_BYTES, periodicFlush: FLUSH_EVERY_MS }),
  );
}

/**
 * An error as a log line holds it: its type, message, code, status, stack frames and causes, each
 * bounded. Only these: libraries hang anything on their errors (ioredis the command's arguments,
 * a login's password among them; an HTTP client the response's headers).
 */
export function serializeError(error: unknown, depth = 0): unknown {
  if (!(error instanceof Error)) {
    if (typeof error === 'string') return error.slice(0, MAX_ERROR_TEXT);
    if (typeof error !== 'object' || error === null) return error;
    // Something thrown that is not an Error: its text, bounded (it may hold anything).
    return { type: 'non-error', message: textOf(error).slice(0, MAX_ERROR_TEXT) };
  }
  const out: Record<string, unknown> = { type: String(error.name), message: String(error.message).slice(0, MAX_ERROR_TEXT) };
  const { code, status } = error as { code?: unknown; status?: unknown };
  if (typeof code === 'string' || typeof code === 'number') out.code = code;
  if (typeof status === 'number') out.status = status;
  // The frames only: the stack's first lines repeat the message.
  const frames = typeof error.stack === 'string' ? error.stack.split('\n').filter((line) => line.startsWith('    at ')) : [];
  if (frames.length > 0) out.stack = frames.join('\n').slice(0, MAX_ERROR_TEXT);
  if (error.cause !== undefined && depth < MAX_CAUSES) out.cause = serializeError(error.cause, depth + 1);
  return out;
}

function textOf(value: object): string {
  try {
    return JSON.stringify(value) ?? Object.prototype.toString.call(value);
  } catch {
    // Circular, or a getter that throws.
    return Object.prototype.toString.call(value);
  }
}

function scrubber(secrets: readonly string[]): ((line: string) => string) | undefined {
  // As they appear inside a JSON string (escaped), longest first (one may contain another).
  const kept = secrets.filter((s) => s.length >= MIN_SECRET_CHARS && !/^\d+$/.test(s));
  const forms = [...new Set(kept.map((s) => JSON.stringify(s).slice(1, -1)))].sort((a, b) => b.length - a.length);
  if (forms.length === 0) return undefined;
  return (line) => {
    for (const form of forms) if (line.includes(form)) line = redact(line, form);
    return line;
  };
}

/** `line` with `form` replaced, except where it would start inside an escape (`\\n` then `n...`): the line must still parse. */
function redact(line: string, form: string): string {
  let out = '';
  let from = 0;
  for (let at = line.indexOf(form); at !== -1; at = line.indexOf(form, at + 1)) {
    if (at < from) continue;
    let backslashes = 0;
    while (at - backslashes - 1 >= 0 && line[at - backslashes - 1] === '\\') backslashes++;
    if (backslashes % 2 === 1) continue;
    out += `${line.slice(from, at)}[redacted]`;
    from = at + form.length;
  }
  return out + line.slice(from);
}
