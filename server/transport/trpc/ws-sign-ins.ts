import type { WebSocket } from 'ws';
import type { Identity } from '../../core/credentials.ts';

/** Why a connection's credential ended: its token's `exp` passed, or its key was removed (a reload). */
export type SignInEnd = 'expired' | 'revoked';

export interface WsSignInsOptions {
  /**
   * How often expiries are looked for. One tick for every connection, rather than a timer each: an
   * expiry is read on the verifier's clock (which a timer cannot follow when tests move it), and a
   * token valid for weeks would overflow a timer (about 24.8 days at most).
   */
  readonly tickMs: number;
  /** The owner a credential names now (or undefined): asked again for keys, after a reload. */
  readonly ownerOf: (credential: string | undefined) => Promise<string | undefined>;
  /** Told once, for each connection whose credential ended while it was open. */
  readonly ended: (ws: WebSocket, why: SignInEnd) => void;
}

interface SignIn {
  readonly credential: string | undefined;
  readonly identity: Identity;
}

/**
 * The signed-in WebSocket connections, each held to the credential it showed when it opened (tRPC's
 * protocol has no way to show another on an open connection): one whose token expires, or whose
 * API key a reload removes, is reported once, and then forgotten, as each is when it closes.
 */
export class WsSignIns {
  readonly #o: WsSignInsOptions;
  /** Connections whose credential runs out by itself (tokens), looked at every tick. */
  readonly #expiring = new Map<WebSocket, SignIn>();
  /** Connections whose credential holds until removed (keys), looked at after each reload. */
  readonly #lasting = new Map<WebSocket, SignIn>();
  #tick: NodeJS.Timeout | undefined;
  #rechecks = 0;

  constructor(options: WsSignInsOptions) {
    if (!Number.isInteger(options.tickMs) || options.tickMs < 1) throw new RangeError(`ws sign-ins: tickMs must be a positive integer, got ${options.tickMs}`);
    this.#o = options;
  }

  /**
   * How many rechecks have begun: a credential checked before one began (read this before checking
   * it) may have been removed by it, and is checked again when watched.
   */
  get revision(): number {
    return this.#rechecks;
  }

  /** Follows a signed-in connection until it closes (`checkedAt`: the revision before its credential was checked). */
  watch(ws: WebSocket, credential: string | undefined, identity: Identity, checkedAt: number): void {
    // Its 'close' has come and gone: nothing would forget it.
    if (ws.readyState === ws.CLOSED) return;
    const signIn: SignIn = { credential, identity };
    if (identity.expiry) {
      this.#expiring.set(ws, signIn);
      this.#tick ??= setInterval(() => this.#expire(), this.#o.tickMs).unref();
    } else {
      this.#lasting.set(ws, signIn);
      if (checkedAt !== this.#rechecks) void this.#recheckOne(ws, signIn, this.#o.ownerOf(credential));
    }
    ws.once('close', () => this.#forget(ws));
  }

  /**
   * After the keys changed (a reload): each connection signed in with a key that no longer names its
   * owner ends as revoked. Each distinct key is checked once, however many connections show it; a
   * check that fails (an identity provider that cannot be reached) ends nothing.
   */
  async recheck(): Promise<void> {
    this.#rechecks++;
    const owners = new Map<string | undefined, Promise<string | undefined>>();
    const checks: Promise<void>[] = [];
    for (const [ws, signIn] of this.#lasting) {
      let owner = owners.get(signIn.credential);
      if (!owner) owners.set(signIn.credential, (owner = this.#o.ownerOf(signIn.credential)));
      checks.push(this.#recheckOne(ws, signIn, owner));
    }
    await Promise.all(checks);
  }

  async #recheckOne(ws: WebSocket, signIn: SignIn, owner: Promise<string | undefined>): Promise<void> {
    const now = await owner.catch(() => signIn.identity.owner);
    // It closed, or ended otherwise, while the check ran.
    if (this.#lasting.get(ws) !== signIn || now === signIn.identity.owner) return;
    this.#lasting.delete(ws);
    this.#o.ended(ws, 'revoked');
  }

  #expire(): void {
    for (const [ws, { identity }] of this.#expiring) {
      if (identity.expiry!.now() < identity.expiry!.at) continue;
      this.#expiring.delete(ws);
      this.#o.ended(ws, 'expired');
    }
    this.#stopTickWhenIdle();
  }

  #forget(ws: WebSocket): void {
    this.#lasting.delete(ws);
    if (this.#expiring.delete(ws)) this.#stopTickWhenIdle();
  }

  #stopTickWhenIdle(): void {
    if (this.#expiring.size > 0 || !this.#tick) return;
    clearInterval(this.#tick);
    this.#tick = undefined;
  }
}
