import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createHTTPHandler } from '@trpc/server/adapters/standalone';
import { afterEach } from 'vitest';
import { createSink } from '../../server/transport/backpressure.ts';
import { HeldAnswers } from '../../server/transport/held-answers.ts';
import { bearerToken } from '../../server/transport/http/bearer.ts';
import { chatApi, type TRPCContext } from '../../server/transport/trpc/context.ts';
import { createAppRouter } from '../../server/transport/trpc/router.ts';
import type { TestServer } from './server.ts';

// tRPC's own standalone HTTP handler, serving Sluice's router on a Sluice instance's chat service:
// the reference our hand-written tRPC wire is held to.

const references: Server[] = [];
afterEach(async () => {
  for (const server of references.splice(0)) {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  }
});

/** tRPC's own HTTP handler, serving Sluice's router on the Sluice instance's chat service. */
export async function referenceServer(sluice: TestServer['sluice']): Promise<string> {
  const handler = createHTTPHandler({
    router: createAppRouter({ ssePingMs: 0 }),
    basePath: '/trpc/',
    createContext: ({ req, res }): TRPCContext => ({
      chat: chatApi(sluice.admission, sluice.service, new HeldAnswers(1_000_000_000)),
      answerTaken: () => Promise.resolve(),
      credential: bearerToken(req.headers.authorization),
      transport: 'trpc-http',
      metrics: sluice.metrics,
      sink: createSink({ buffered: () => res.writableLength, drains: res, cut: () => res.destroy(), highWaterBytes: 65536, sendTimeoutMs: 30000 }),
    }),
  });
  const server = createServer((req, res) => handler(req, res));
  references.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}
