import cluster from 'node:cluster';
import { AggregatorRegistry, type Registry } from 'prom-client';

// With WORKERS, the service has one port and a scrape reaches one worker: alone, its numbers
// would read to Prometheus as a counter that resets at every scrape. The worker asks the primary,
// which collects every worker's registries and sums them (prom-client's AggregatorRegistry).

const REQUEST = 'sluice:metrics-request';
const ANSWER = 'sluice:metrics-answer';
/** Longer than the primary's own wait for its workers (prom-client's 5 s). */
const ANSWER_WAIT_MS = 6000;

interface Request {
  readonly type: typeof REQUEST;
  readonly id: number;
}
interface Answer {
  readonly type: typeof ANSWER;
  readonly id: number;
  readonly body?: string;
  readonly error?: string;
}

const isMessage = <T extends { type: string }>(message: unknown, type: T['type']): message is T =>
  typeof message === 'object' && message !== null && (message as { type?: unknown }).type === type;

/** In the primary: answers a worker's request with the metrics of every worker, summed. */
export function serveClusterMetrics(): void {
  const aggregator = new AggregatorRegistry();
  cluster.on('message', (worker, message: unknown) => {
    if (!isMessage<Request>(message, REQUEST)) return;
    const answer = (reply: Omit<Answer, 'type' | 'id'>): void => {
      if (worker.isConnected()) worker.send({ type: ANSWER, id: message.id, ...reply } satisfies Answer);
    };
    aggregator.clusterMetrics().then(
      (body) => answer({ body }),
      (error: unknown) => answer({ error: error instanceof Error ? error.message : String(error) }),
    );
  });
}

/**
 * In a worker: `registries` answer the primary's collection, and the returned function gives the
 * exposition text of every worker (for `GET /metrics`, whichever worker serves it).
 */
export function clusterWideMetrics(registries: Registry[]): () => Promise<string> {
  AggregatorRegistry.setRegistries(registries);
  // Made for its side effect: the worker's listener for the primary's collection.
  new AggregatorRegistry();
  let next = 0;
  const waiting = new Map<number, { resolve(body: string): void; reject(error: Error): void; timer: NodeJS.Timeout }>();
  process.on('message', (message: unknown) => {
    if (!isMessage<Answer>(message, ANSWER)) return;
    const waiter = waiting.get(message.id);
    if (!waiter) return;
    waiting.delete(message.id);
    clearTimeout(waiter.timer);
    if (message.body !== undefined) waiter.resolve(message.body);
    else waiter.reject(new Error(`the primary could not collect the workers' metrics: ${message.error ?? 'no answer'}`));
  });
  return () =>
    new Promise<string>((resolve, reject) => {
      const id = next++;
      const timer = setTimeout(() => {
        waiting.delete(id);
        reject(new Error("the primary did not answer with the workers' metrics"));
      }, ANSWER_WAIT_MS);
      waiting.set(id, { resolve, reject, timer });
      process.send!({ type: REQUEST, id } satisfies Request);
    });
}
