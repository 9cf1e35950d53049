/**
 * What a credential (an API key; an end-user token) says about its bearer: the owner whose sessions
 * it may use. Every route and transport asks through this one port, so that a missing, wrong or
 * expired credential is refused the same way everywhere.
 */
export interface Credentials {
  /** True when requests must present a credential (keys or tokens are configured). */
  readonly required: boolean;
  /**
   * The owner a credential names, or undefined when it is missing or invalid (callers cannot tell
   * which: both are the same refusal). With no credentials configured every caller is `anonymous`.
   */
  ownerOf(credential: string | undefined): Promise<string | undefined>;
  /**
   * ownerOf, with when the credential runs out. Optional: a Credentials without it (one a test or an
   * embedder passes) is taken to name owners whose credentials hold until they are removed.
   */
  identityOf?(credential: string | undefined): Promise<Identity | undefined>;
}

/** Who a credential names, and until when: what a connection that shows it once (a WebSocket) is held to. */
export interface Identity {
  readonly owner: string;
  /** For a credential that runs out by itself (a token's `exp`); none for one that holds until removed (an API key). */
  readonly expiry?: Expiry;
}

export interface Expiry {
  /** When the credential stops being accepted, in ms on `now`'s clock, the verifier's leeway included. */
  readonly at: number;
  /** The verifier's own clock (tests move it), so that an expiry is seen exactly when the verifier would refuse. */
  readonly now: () => number;
}

/** The identity a credential shows, from any Credentials (with or without `identityOf`). */
export async function identityOf(credentials: Credentials, credential: string | undefined): Promise<Identity | undefined> {
  if (credentials.identityOf) return credentials.identityOf(credential);
  const owner = await credentials.ownerOf(credential);
  return owner ? { owner } : undefined;
}

/** The prefix of the owners end-user tokens name (API keys' are `k_...`). */
export const END_USER_PREFIX = 'u_';

/** Whether an owner is an end user (signed in with a token), not an API key of the operator's. */
export function isEndUser(owner: string): boolean {
  return owner.startsWith(END_USER_PREFIX);
}
