import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { ErrorCode } from '../../shared/errors.ts';
import type { TokenUsage } from '../../shared/messages.ts';
import type { Outcome } from '../core/generation.ts';
import type { GenerationObserver } from '../core/observer.ts';
import { SluiceError } from '../core/errors.ts';
import { clusterWideMetrics } from './cluster-metrics.ts';

// Process metrics are per process, not per server: collected once, into a registry of their own.
let processRegistry: Registry | undefined;
function processMetrics(): Registry {
  if (!processRegistry) {
    processRegistry = new Registry();
    collectDefaultMetrics({ register: processRegistry, prefix: 'sluice_' });
  }
  return processRegistry;
}

/** How an open connection is counted: a WebSocket as `ws_unauthenticated` until it shows a credential (when one is required). */
export type ConnectionKind = 'http' | 'ws' | 'ws_unauthenticated';

const DELTA_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

/** Sluice's Prometheus metrics (prom-client), one registry per server. */
export class Metrics implements GenerationObserver {
  readonly #registry = new Registry();
  // What changes on every reply is counted here, as plain numbers, and handed to prom-client when it
  // collects (a scrape): prom-client checks and hashes the labels on every call (0.2-0.6 µs each),
  // and a reply made a dozen such calls.
  /** Streams being sent now, by transport. */
  readonly #streams = new Map<string, number>();
  /** Events sent since the last scrape, by transport. */
  readonly #eventsSince = new Map<string, number>();
  /** Generations ended since the last scrape, by outcome, then transport. */
  readonly #generationsSince = new Map<Outcome, Map<string, number>>();
  #deltasSince = 0;
  /** Tokens since the last scrape, by outcome, then source: [prompt, completion]. */
  readonly #usageSince = new Map<Outcome, Map<'provider' | 'estimated', [number, number]>>();

  readonly #activeStreams = new Gauge({
    name: 'sluice_active_streams',
    help: 'Streams being sent to clients now, by transport',
    labelNames: ['transport'],
    registers: [this.#registry],
    collect: () => {
      for (const [transport, n] of this.#streams) this.#activeStreams.set({ transport }, n);
    },
  });
  readonly #connections = new Gauge({
    name: 'sluice_open_connections',
    help: 'Open client connections, by transport (http; ws; ws_unauthenticated: a WebSocket that has not shown a credential yet)',
    labelNames: ['transport'],
    registers: [this.#registry],
  });
  readonly #ttft = new Histogram({
    name: 'sluice_time_to_first_delta_seconds',
    help: 'Time from the start of a generation to its first delta (time to first token)',
    buckets: DELTA_BUCKETS,
    registers: [this.#registry],
  });
  // Per generation, not per delta: an observation per delta was a tenth of the SSE route's CPU per event.
  readonly #meanGap = new Histogram({
    name: 'sluice_time_per_delta_seconds',
    help: 'Mean time between consecutive deltas, one observation per generation of two deltas or more',
    buckets: DELTA_BUCKETS,
    registers: [this.#registry],
  });
  readonly #maxGap = new Histogram({
    name: 'sluice_max_delta_gap_seconds',
    help: 'Longest time between two consecutive deltas of a generation (upstream stalls)',
    buckets: DELTA_BUCKETS,
    registers: [this.#registry],
  });
  readonly #deltas: Counter = new Counter({
    name: 'sluice_deltas_total',
    help: 'Deltas (pieces of reply text) produced by providers',
    registers: [this.#registry],
    collect: () => {
      if (this.#deltasSince > 0) this.#deltas.inc(this.#deltasSince);
      this.#deltasSince = 0;
    },
  });
  readonly #events: Counter = new Counter({
    name: 'sluice_events_sent_total',
    help: 'Stream events sent to clients, by transport',
    labelNames: ['transport'],
    registers: [this.#registry],
    collect: () => {
      for (const [transport, n] of this.#eventsSince) this.#events.inc({ transport }, n);
      this.#eventsSince.clear();
    },
  });
  readonly #generations: Counter = new Counter({
    name: 'sluice_generations_total',
    help: 'Finished generations, by outcome',
    labelNames: ['outcome', 'transport'],
    registers: [this.#registry],
    collect: () => {
      for (const [outcome, byTransport] of this.#generationsSince) for (const [transport, n] of byTransport) this.#generations.inc({ outcome, transport }, n);
      this.#generationsSince.clear();
    },
  });
  readonly #usage: Counter = new Counter({
    name: 'sluice_usage_tokens_total',
    help: 'Tokens consumed by finished generations, by kind (prompt, completion), outcome and source (provider: reported by it; estimated: counted by Sluice)',
    labelNames: ['kind', 'outcome', 'source'],
    registers: [this.#registry],
    collect: () => {
      for (const [outcome, bySource] of this.#usageSince) {
        for (const [source, [prompt, completion]] of bySource) {
          this.#usage.inc({ kind: 'prompt', outcome, source }, prompt);
          this.#usage.inc({ kind: 'completion', outcome, source }, completion);
        }
      }
      this.#usageSince.clear();
    },
  });
  readonly #failures = new Counter({
    name: 'sluice_generation_errors_total',
    help: 'Failed generations, by error code (upstream_* are the upstream model)',
    labelNames: ['code'],
    registers: [this.#registry],
  });
  readonly #resumes = new Counter({
    name: 'sluice_resumes_total',
    help: 'Streams resumed from an event id, by transport',
    labelNames: ['transport'],
    registers: [this.#registry],
  });
  readonly #evicted = new Counter({
    name: 'sluice_sessions_evicted_total',
    help: 'Sessions deleted to bound the store, by reason (capacity: the memory store was full, its least recently used went; idle: untouched for SESSION_TTL_DAYS)',
    labelNames: ['reason'],
    registers: [this.#registry],
  });
  readonly #rejected = new Counter({
    name: 'sluice_rejected_requests_total',
    help: 'Requests refused before streaming, by reason',
    labelNames: ['reason'],
    registers: [this.#registry],
  });

  /** With WORKERS: the text of every worker's metrics (see cluster-metrics.ts). */
  readonly #clusterWide: (() => Promise<string>) | undefined;

  constructor(runningGenerations: () => number, options: { readonly clusterWide?: boolean } = {}) {
    this.#clusterWide = options.clusterWide ? clusterWideMetrics([processMetrics(), this.#registry]) : undefined;
    new Gauge({
      name: 'sluice_running_generations',
      help: 'Generations producing on this instance now',
      registers: [this.#registry],
      collect() {
        this.set(runningGenerations());
      },
    });
  }

  /** The exposition text for `GET /metrics`, with process metrics. */
  async render(): Promise<{ contentType: string; body: string }> {
    if (this.#clusterWide) {
      const body = await this.#clusterWide().catch((error: unknown) => {
        throw new SluiceError('unavailable', "The workers' metrics could not be collected; try again shortly", { cause: error });
      });
      return { contentType: Registry.PROMETHEUS_CONTENT_TYPE, body };
    }
    const merged = Registry.merge([processMetrics(), this.#registry]);
    return { contentType: merged.contentType, body: await merged.metrics() };
  }

  streamOpened(transport: string): void {
    this.#streams.set(transport, (this.#streams.get(transport) ?? 0) + 1);
  }

  streamClosed(transport: string, eventsSent: number): void {
    this.#streams.set(transport, (this.#streams.get(transport) ?? 0) - 1);
    if (eventsSent > 0) this.#eventsSince.set(transport, (this.#eventsSince.get(transport) ?? 0) + eventsSent);
  }

  connectionOpened(transport: ConnectionKind): void {
    this.#connections.inc({ transport });
  }

  connectionClosed(transport: ConnectionKind): void {
    this.#connections.dec({ transport });
  }

  rejected(reason: string): void {
    this.#rejected.inc({ reason });
  }

  sessionsEvicted(reason: 'capacity' | 'idle', count = 1): void {
    this.#evicted.inc({ reason }, count);
  }

  // GenerationObserver
  started(): void {}
  firstDelta(ms: number): void {
    this.#ttft.observe(ms / 1000);
  }
  deltaGaps(meanMs: number, maxMs: number): void {
    this.#meanGap.observe(meanMs / 1000);
    this.#maxGap.observe(maxMs / 1000);
  }
  ended(outcome: Outcome, transport: string, deltas: number, usage?: TokenUsage): void {
    let byTransport = this.#generationsSince.get(outcome);
    if (!byTransport) this.#generationsSince.set(outcome, (byTransport = new Map<string, number>()));
    byTransport.set(transport, (byTransport.get(transport) ?? 0) + 1);
    this.#deltasSince += deltas;
    if (usage) {
      let bySource = this.#usageSince.get(outcome);
      if (!bySource) this.#usageSince.set(outcome, (bySource = new Map<'provider' | 'estimated', [number, number]>()));
      const source = usage.estimated ? 'estimated' : 'provider';
      const tokens = bySource.get(source);
      if (tokens) {
        tokens[0] += usage.promptTokens;
        tokens[1] += usage.completionTokens;
      } else bySource.set(source, [usage.promptTokens, usage.completionTokens]);
    }
  }
  failed(code: ErrorCode): void {
    this.#failures.inc({ code });
  }
  resumed(transport: string): void {
    this.#resumes.inc({ transport });
  }
}
