/** What a client can tell about one reply's speed, measured on its side. */
export interface ReplyStats {
  /** From sending the message to the first delta, in ms (undefined: no token arrived). */
  readonly firstTokenMs: number | undefined;
  /** Deltas received (the server streams one token per delta). */
  readonly tokens: number;
  /** Rate between the first and the last delta (undefined with fewer than two). */
  readonly tokensPerSecond: number | undefined;
}

/** Measures one reply: create it when the message is sent, call `delta()` per delta. */
export class ReplyTimer {
  private readonly sentAt: number;
  private firstAt: number | undefined;
  private lastAt: number | undefined;
  private count = 0;

  constructor(private readonly now: () => number = () => performance.now()) {
    this.sentAt = now();
  }

  delta(): void {
    const t = this.now();
    this.firstAt ??= t;
    this.lastAt = t;
    this.count++;
  }

  get tokens(): number {
    return this.count;
  }

  stats(): ReplyStats {
    const span = this.firstAt !== undefined && this.lastAt !== undefined ? this.lastAt - this.firstAt : 0;
    return {
      firstTokenMs: this.firstAt === undefined ? undefined : this.firstAt - this.sentAt,
      tokens: this.count,
      tokensPerSecond: this.count >= 2 && span > 0 ? ((this.count - 1) * 1000) / span : undefined,
    };
  }
}

/** `first token 52 ms · 39 tokens · 19.8 tokens/s` */
export function formatReplyStats(stats: ReplyStats): string {
  const parts = [stats.firstTokenMs === undefined ? 'no tokens' : `first token ${Math.round(stats.firstTokenMs)} ms`];
  if (stats.tokens > 0) parts.push(`${stats.tokens} token${stats.tokens === 1 ? '' : 's'}`);
  if (stats.tokensPerSecond !== undefined) parts.push(`${stats.tokensPerSecond.toFixed(1)} tokens/s`);
  return parts.join(' · ');
}
