import { createHash, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { Credentials } from './credentials.ts';

export const ANONYMOUS_OWNER = 'anonymous';

interface KnownKey {
  readonly hash: Buffer;
  /** The tenant id the key's sessions live under: derived from the hash, so it reveals nothing of the key. */
  readonly owner: string;
}

const sha256 = (text: string): Buffer => createHash('sha256').update(text, 'utf8').digest();

/** Parses a keys file: one key a line; blank lines and `#` comments ignored. */
export function parseKeysFile(text: string): string[] {
  return text
    .split(/\r?\n/)
    .map((line) => line.replace(/#.*$/, '').trim())
    .filter((line) => line.length > 0);
}

/**
 * The configured API keys, held only as SHA-256 hashes. A presented key is hashed and compared with
 * every known hash in constant time, so neither timing nor the answer tells whether a key exists.
 */
export class ApiKeys implements Credentials {
  readonly #keys: readonly KnownKey[];

  constructor(keys: readonly string[]) {
    for (const key of keys) {
      if (key.length < 16) throw new RangeError('API keys must be at least 16 characters long');
      if (/\s/.test(key)) throw new RangeError('API keys must not contain whitespace');
    }
    this.#keys = [...new Set(keys)].map((key) => {
      const hash = sha256(key);
      return { hash, owner: `k_${hash.subarray(0, 12).toString('hex')}` };
    });
  }

  static fromSources(sources: { file?: string | undefined; list?: string | undefined }): ApiKeys {
    const keys: string[] = [];
    if (sources.file) keys.push(...parseKeysFile(readKeysFile(sources.file)));
    if (sources.list)
      keys.push(
        ...sources.list
          .split(',')
          .map((k) => k.trim())
          .filter(Boolean),
      );
    if (sources.file && keys.length === 0) throw new RangeError(`API_KEYS_FILE: ${sources.file} holds no keys`);
    return new ApiKeys(keys);
  }

  get required(): boolean {
    return this.#keys.length > 0;
  }

  async ownerOf(credential: string | undefined): Promise<string | undefined> {
    return this.identify(credential);
  }

  /** The owner for a presented key; `anonymous` when keys are off; undefined when it is missing or wrong. */
  identify(presented: string | undefined | null): string | undefined {
    if (!this.required) return ANONYMOUS_OWNER;
    if (!presented) return undefined;
    const hash = sha256(presented);
    let owner: string | undefined;
    // No early exit: every known key is compared, whichever matches.
    for (const key of this.#keys) if (timingSafeEqual(hash, key.hash)) owner = key.owner;
    return owner;
  }
}

function readKeysFile(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (error) {
    throw new RangeError(`API_KEYS_FILE: cannot read ${file} (${(error as Error).message})`, { cause: error });
  }
}
