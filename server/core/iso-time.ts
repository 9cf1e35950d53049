let lastMs = Number.NaN;
let lastIso = '';

/**
 * `new Date(ms).toISOString()`, kept for the last millisecond asked: formatting costs about 1 µs,
 * and every reply asks several times (its message, its draft, its reply), often within the same
 * millisecond as other replies do.
 */
export function isoTime(ms: number = Date.now()): string {
  if (ms !== lastMs) {
    lastIso = new Date(ms).toISOString();
    lastMs = ms;
  }
  return lastIso;
}
