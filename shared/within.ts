/**
 * `work`'s outcome, or `late()`'s once `ms` have passed (its value, or the error it throws). The
 * work itself is left to end on its own: this only stops waiting for it. With `unref`, the timer
 * does not keep a Node program alive by itself (a client's background wait); a server waiting for
 * the outcome keeps it.
 */
export function within<T>(work: PromiseLike<T>, ms: number, late: () => T, options: { readonly unref?: boolean } = {}): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const deadline = new Promise<T>((resolve, reject) => {
    timer = setTimeout(() => {
      try {
        resolve(late());
      } catch (error) {
        reject(error);
      }
    }, ms);
    if (options.unref) (timer as { unref?: () => void }).unref?.();
  });
  return Promise.race([Promise.resolve(work), deadline]).finally(() => clearTimeout(timer));
}
