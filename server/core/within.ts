/**
 * `work`'s outcome, or `late()`'s once `ms` have passed (its value, or the error it throws). The
 * work itself is left to end on its own: this only stops waiting for it.
 */
export function within<T>(work: PromiseLike<T>, ms: number, late: () => T): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<T>((resolve, reject) => {
    timer = setTimeout(() => {
      try {
        resolve(late());
      } catch (error) {
        reject(error);
      }
    }, ms);
  });
  return Promise.race([Promise.resolve(work), deadline]).finally(() => clearTimeout(timer));
}
