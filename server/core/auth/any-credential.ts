import { ANONYMOUS_OWNER } from '../api-keys.ts';
import { identityOf, type Credentials, type Identity } from '../credentials.ts';

/**
 * Several kinds of credential at once (API keys and end-user tokens): a credential names the owner
 * the first kind that accepts it names. The kinds' owners never collide (`k_...` for keys, `u_...`
 * for users). With none configured, every caller is `anonymous`.
 */
export class AnyCredential implements Credentials {
  readonly #kinds: readonly Credentials[];

  constructor(kinds: readonly Credentials[]) {
    this.#kinds = kinds.filter((kind) => kind.required);
  }

  get required(): boolean {
    return this.#kinds.length > 0;
  }

  async ownerOf(credential: string | undefined): Promise<string | undefined> {
    return (await this.identityOf(credential))?.owner;
  }

  async identityOf(credential: string | undefined): Promise<Identity | undefined> {
    if (!this.required) return { owner: ANONYMOUS_OWNER };
    if (!credential) return undefined;
    for (const kind of this.#kinds) {
      const identity = await identityOf(kind, credential);
      if (identity) return identity;
    }
    return undefined;
  }
}
