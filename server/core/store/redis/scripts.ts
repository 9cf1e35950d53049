import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { packageRoot } from '../../../package-root.ts';

// The Lua scripts live in their own files (lua/*.lua), read once at start-up from the package's
// sources: the same files whether the server runs from TypeScript or bundled.
const DIR = join(packageRoot(), 'server/core/store/redis/lua');

/** Scripts with a fixed number of keys: each is a command of the connection, named as here. */
export const SCRIPTS = {
  acquireLease: { file: 'acquire-lease.lua', keys: 1 },
  refreshLease: { file: 'refresh-lease.lua', keys: 1 },
  releaseLease: { file: 'release-lease.lua', keys: 1 },
  acquireSlot: { file: 'acquire-slot.lua', keys: 1 },
  refreshSlot: { file: 'refresh-slot.lua', keys: 1 },
  hitWindow: { file: 'hit-window.lua', keys: 1 },
  historyAppend: { file: 'history-append.lua', keys: 3 },
  historyCheckpoint: { file: 'history-checkpoint.lua', keys: 3 },
  historyAdmit: { file: 'history-admit.lua', keys: 1 },
  requestCancel: { file: 'request-cancel.lua', keys: 1 },
  settle: { file: 'settle.lua', keys: 1 },
} as const;
export type ScriptName = keyof typeof SCRIPTS;

/** Scripts given any number of keys (see RedisConnection.evalScript). */
export const VARIADIC_SCRIPTS = {
  appendEvents: 'append-events.lua',
} as const;
export type VariadicScriptName = keyof typeof VARIADIC_SCRIPTS;

/** A script's source. */
export function scriptSource(name: ScriptName): string {
  return readFileSync(join(DIR, SCRIPTS[name].file), 'utf8');
}

/** A variadic script's source and its SHA1 (what EVALSHA names it by). */
export function variadicScript(name: VariadicScriptName): { readonly lua: string; readonly sha: string } {
  const lua = readFileSync(join(DIR, VARIADIC_SCRIPTS[name]), 'utf8');
  return { lua, sha: createHash('sha1').update(lua).digest('hex') };
}
