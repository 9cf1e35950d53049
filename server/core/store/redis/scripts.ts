import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { packageRoot } from '../../../package-root.ts';

// The Lua scripts live in their own files (lua/*.lua), read once at start-up from the package's
// sources: the same files whether the server runs from TypeScript or bundled.
const DIR = join(packageRoot(), 'server/core/store/redis/lua');

/** Each script's command name, its file, and its number of keys (undefined: given with each call). */
export const SCRIPTS = {
  appendEvents: { file: 'append-events.lua', keys: undefined },
  acquireLease: { file: 'acquire-lease.lua', keys: 1 },
  refreshLease: { file: 'refresh-lease.lua', keys: 1 },
  releaseLease: { file: 'release-lease.lua', keys: 1 },
  acquireSlot: { file: 'acquire-slot.lua', keys: 1 },
  refreshSlot: { file: 'refresh-slot.lua', keys: 1 },
  hitWindow: { file: 'hit-window.lua', keys: 1 },
  historyAppend: { file: 'history-append.lua', keys: 3 },
  historyCheckpoint: { file: 'history-checkpoint.lua', keys: 3 },
  requestCancel: { file: 'request-cancel.lua', keys: 1 },
  settle: { file: 'settle.lua', keys: 1 },
} as const;
export type ScriptName = keyof typeof SCRIPTS;

/** A script's source. */
export function scriptSource(name: ScriptName): string {
  return readFileSync(join(DIR, SCRIPTS[name].file), 'utf8');
}
