import cluster, { type Worker } from 'node:cluster';
import { AggregatorRegistry, type Registry } from 'prom-client';

// With WORKERS, the service has one port and a scrape reaches one worker: alone, its numbers
// would read to Prometheus as a counter that resets at every scrape. The worker asks the primary,
// which collects the registries of every worker that serves and sums them (prom-client's
// AggregatorRegistry.aggregate). Not prom-client's own collection: it asks every connected worker,
// one still starting among them, never answers without it (a 5 s wait, then an error), and keeps
// what a failed collection gathered.

const REQUEST = 'sluice:metrics-request';
const ANSWER = 'sluice:metrics-answer';
const COLLECT = 'sluice:metrics-collect';
const PART = 'sluice:metrics-part';
/** How long the primary waits for a worker's part: one that has not answered by then is left out. */
const PART_WAIT_MS = 2000;
/** Longer than the primary's collection. */
const ANSWER_WAIT_MS = PART_WAIT_MS + 1000;

/** One registry's metrics, as getMetricsAsJSON gives them. */
type Metrics = Awaited<ReturnType<Registry['getMetricsAsJSON']>>;
interface Message {
  readonly type: string;
  readonly id: number;
  readonly body?: string;
  readonly error?: string;
  readonly metrics?: Metrics[];
}

const messageOf = (message: unknown, type: string): Message | undefined =>
  typeof message === 'object' && message !== null && (message as { type?: unknown }).type === type ? (message as Message) : undefined;

/** In the primary: answers a worker's request with the metrics of the workers that serve, summed. */
export function serveClusterMetrics(serving: () => Iterable<Worker>): void {
  let next = 0;
  const parts = new Map<number, (metrics: Metrics[]) => void>();
  cluster.on('message', (worker, raw: unknown) => {
    const part = messageOf(raw, PART);
    if (part) {
      parts.get(part.id)?.(part.metrics ?? []);
      return;
    }
    const request = messageOf(raw, REQUEST);
    if (!request) return;
    const asks = [...serving()]
      .filter((w) => w.isConnected())
      .map(
        (w) =>
          new Promise<Metrics[]>((resolve) => {
            const id = next++;
            const timer = setTimeout(() => settle([]), PART_WAIT_MS);
            const settle = (metrics: Metrics[]): void => {
              clearTimeout(timer);
              parts.delete(id);
              resolve(metrics);
            };
            parts.set(id, settle);
            w.send({ type: COLLECT, id });
          }),
      );
    void Promise.all(asks)
      .then((answers) => AggregatorRegistry.aggregate(answers.flat()).metrics())
      .then(
        (body) => ({ body }),
        (error: unknown) => ({ error: error instanceof Error ? error.message : String(error) }),
      )
      .then((answer) => {
        if (worker.isConnected()) worker.send({ type: ANSWER, id: request.id, ...answer });
      });
  });
}

let registries: Registry[] = [];
let ask: (() => Promise<string>) | undefined;

/**
 * In a worker: `of` answers the primary's collection, and the returned function gives the
 * exposition text of every serving worker (for `GET /metrics`, whichever worker serves it).
 */
export function clusterWideMetrics(of: Registry[]): () => Promise<string> {
  registries = of;
  if (ask) return ask;
  let next = 0;
  const waiting = new Map<number, { resolve(body: string): void; reject(error: Error): void; timer: NodeJS.Timeout }>();
  process.on('message', (raw: unknown) => {
    const collect = messageOf(raw, COLLECT);
    if (collect) {
      void Promise.all(registries.map((r) => r.getMetricsAsJSON())).then(
        (metrics) => process.send?.({ type: PART, id: collect.id, metrics }),
        () => process.send?.({ type: PART, id: collect.id, metrics: [] }),
      );
      return;
    }
    const answer = messageOf(raw, ANSWER);
    const waiter = answer && waiting.get(answer.id);
    if (!answer || !waiter) return;
    waiting.delete(answer.id);
    clearTimeout(waiter.timer);
    if (answer.body !== undefined) waiter.resolve(answer.body);
    else waiter.reject(new Error(`the primary could not collect the workers' metrics: ${answer.error ?? 'no answer'}`));
  });
  ask = () =>
    new Promise<string>((resolve, reject) => {
      const id = next++;
      const timer = setTimeout(() => {
        waiting.delete(id);
        reject(new Error("the primary did not answer with the workers' metrics"));
      }, ANSWER_WAIT_MS);
      waiting.set(id, { resolve, reject, timer });
      process.send!({ type: REQUEST, id });
    });
  return ask;
}
