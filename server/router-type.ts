/** The router's type, for typed clients in other projects: `import type { AppRouter } from 'sluice/router'`. */
export type { AppRouter } from './transport/trpc/router.ts';
