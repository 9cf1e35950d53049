/**
 * Rewrites the configuration reference in README.md (between `<!-- config:start -->` and
 * `<!-- config:end -->`) from ConfigSchema. `--check` only reports whether it is up to date.
 *
 *   npm run docs:config            # rewrite
 *   npm run docs:config -- --check # exit 1 when the README differs from the schema
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { configReference, currentConfigSection, replaceConfigSection } from './config-reference.ts';

const readmePath = fileURLToPath(new URL('../../README.md', import.meta.url));
const readme = readFileSync(readmePath, 'utf8');
const section = configReference();

if (process.argv.includes('--check')) {
  if (currentConfigSection(readme) !== section) {
    console.error('README.md: the configuration reference differs from server/config.ts; run `npm run docs:config`');
    process.exit(1);
  }
  console.log('README.md: configuration reference is up to date');
} else {
  const updated = replaceConfigSection(readme, section);
  if (updated !== readme) writeFileSync(readmePath, updated);
  console.log(updated === readme ? 'README.md: configuration reference already up to date' : 'README.md: configuration reference rewritten');
}
