/**
 * Writes dist/server/main.mjs, the server `npm start` runs (see server-bundle.ts).   npm run build
 */
import { relative } from 'node:path';
import { buildServer } from './server-bundle.ts';

console.log(`built ${relative(process.cwd(), await buildServer())}`);
