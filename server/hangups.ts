// SIGHUP asks a running Sluice to read again what it can without a restart (API_KEYS_FILE). Node's
// own answer to it is to exit, so the signal is taken from the process's first moments (main.ts
// imports this module first); one that comes before the server serves is answered once it does.

let answer: (() => void) | undefined;
let pending = false;

process.on('SIGHUP', () => {
  if (answer) answer();
  else pending = true;
});

/** From now on SIGHUP calls `fn`, and `fn` runs at once if one came meanwhile. */
export function onHangup(fn: () => void): void {
  answer = fn;
  if (pending) {
    pending = false;
    fn();
  }
}
