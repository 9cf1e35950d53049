import type { TRPCLink } from '@trpc/client';
import { observable } from '@trpc/server/observable';
import type { AppRouter } from '../shared/app-router.ts';

/**
 * The tries of calls (each its own operation object, as a retryLink hands them to its retry
 * decision) that delivered data; `link` goes after the retryLink, and marks them.
 */
export function deliveredTries(): { readonly link: TRPCLink<AppRouter>; readonly delivered: WeakSet<object> } {
  const delivered = new WeakSet<object>();
  const link: TRPCLink<AppRouter> =
    () =>
    ({ op, next }) =>
      observable((observer) => {
        const inner = next(op).subscribe({
          next: (value) => {
            // Data only: a subscription also reports its connection's state ('started', 'state').
            const type = (value.result as { type?: string }).type;
            if (type === undefined || type === 'data') delivered.add(op);
            observer.next(value);
          },
          error: (error) => observer.error(error),
          complete: () => observer.complete(),
        });
        return () => inner.unsubscribe();
      });
  return { link, delivered };
}
