import { createHTTPServer } from '@trpc/server/adapters/standalone';
import { listenAndAnnounce } from './listen.ts';
import { minimalRouter } from './trpc-router.ts';

// Baseline: the minimal tRPC router over HTTP with tRPC's own SSE producer (stock standalone
// adapter, basePath /trpc/), for `httpSubscriptionLink`.

const server = createHTTPServer({ router: minimalRouter, basePath: '/trpc/' });

await listenAndAnnounce(server, 'trpc-sse-min');
