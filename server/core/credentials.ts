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
}

/** The prefix of the owners end-user tokens name (API keys' are `k_...`). */
export const END_USER_PREFIX = 'u_';

/** Whether an owner is an end user (signed in with a token), not an API key of the operator's. */
export function isEndUser(owner: string): boolean {
  return owner.startsWith(END_USER_PREFIX);
}
