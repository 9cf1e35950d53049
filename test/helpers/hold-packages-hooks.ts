import { existsSync, watch, writeSync } from 'node:fs';
import { dirname } from 'node:path';
import type { InitializeHook, LoadHook } from 'node:module';

// The hooks of hold-packages.ts (they run on Node's loader thread).

let until: string | undefined;
let held = false;

export const initialize: InitializeHook<{ until?: string }> = (data) => {
  until = data.until;
};

/** Resolves once `file` exists (its directory watched, not polled). */
function created(file: string): Promise<void> {
  return new Promise((resolve) => {
    const watcher = watch(dirname(file), () => {
      if (!existsSync(file)) return;
      watcher.close();
      resolve();
    });
    if (existsSync(file)) {
      watcher.close();
      resolve();
    }
  });
}

export const load: LoadHook = async (url, context, next) => {
  if (until !== undefined && !held && url.includes('/node_modules/')) {
    held = true;
    writeSync(2, 'holding packages\n');
    await created(until);
  }
  return next(url, context);
};
