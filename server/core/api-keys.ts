import { createHash, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { Credentials, Identity } from './credentials.ts';

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

/** Where the keys come from: a file (`API_KEYS_FILE`), a comma-separated list (`API_KEYS`), or both. */
export interface KeySources {
  readonly file?: string | undefined;
  readonly list?: string | undefined;
}

/**
 * The configured API keys, held only as SHA-256 hashes. A presented key is hashed and compared with
 * every known hash in constant time, so neither timing nor the answer tells whether a key exists.
 * The file can be read again (`reload`, on SIGHUP), so that a key is rotated without a restart.
 */
export class ApiKeys implements Credentials {
  readonly #sources: KeySources;
  #keys: readonly KnownKey[];

  constructor(sources: KeySources) {
    this.#sources = sources;
    this.#keys = knownKeys(sources);
  }

  /** Whether there is a file to read again. */
  get reloadable(): boolean {
    return this.#sources.file !== undefined;
  }

  /**
   * Reads the sources again and lets in their keys from now on; returns how many there are. Throws
   * (a RangeError naming the problem) and keeps the keys in use when the file cannot be read, holds
   * no key (which would let anyone in, were it taken as "keys off") or holds one that is not valid.
   */
  reload(): number {
    this.#keys = knownKeys(this.#sources);
    return this.#keys.length;
  }

  get required(): boolean {
    return this.#keys.length > 0;
  }

  async ownerOf(credential: string | undefined): Promise<string | undefined> {
    return this.identify(credential);
  }

  /** A key holds until it is removed from the file (see `reload`): it has no expiry. */
  async identityOf(credential: string | undefined): Promise<Identity | undefined> {
    const owner = this.identify(credential);
    return owner ? { owner } : undefined;
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

function knownKeys(sources: KeySources): KnownKey[] {
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
  for (const key of keys) {
    if (key.length < 16) throw new RangeError('API keys must be at least 16 characters long');
    if (/\s/.test(key)) throw new RangeError('API keys must not contain whitespace');
  }
  return [...new Set(keys)].map((key) => {
    const hash = sha256(key);
    return { hash, owner: `k_${hash.subarray(0, 12).toString('hex')}` };
  });
}

function readKeysFile(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (error) {
    throw new RangeError(`API_KEYS_FILE: cannot read ${file} (${(error as Error).message})`, { cause: error });
  }
}
