import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { configReference, configSettings, currentConfigSection, replaceConfigSection } from '../server/tools/config-reference.ts';
import { ConfigSchema, flagsToEnv, loadConfig } from '../server/config.ts';

const readme = (): string => readFileSync(new URL('../README.md', import.meta.url), 'utf8');

describe('configuration reference in the README', () => {
  it('is exactly what the schema generates (run `npm run docs:config` after changing server/config.ts)', () => {
    expect(currentConfigSection(readme())).toBe(configReference());
  });

  it('lists every setting once, with its flag, its default and a meaning', () => {
    const settings = configSettings();
    expect(settings.map((s) => s.variable)).toEqual(Object.keys(ConfigSchema.shape));
    const defaults = loadConfig({}) as Record<string, unknown>;
    for (const s of settings) {
      expect(s.flag).toBe(`--${s.variable.toLowerCase().replaceAll('_', '-')}`);
      expect(s.meaning.length).toBeGreaterThan(0);
      const value = defaults[s.variable];
      // The default shown is the value the server really starts with.
      expect(s.defaultValue).toBe(value === undefined ? 'unset' : `\`${String(value)}\``);
      // And the flag shown is the one the server maps to that variable.
      expect(flagsToEnv([s.flag, 'v'])).toEqual({ [s.variable]: 'v' });
    }
    const section = configReference();
    for (const s of settings) expect(section).toContain(`| \`${s.variable}\` | \`${s.flag}\` |`);
  });

  it('the script rewrites only the marked section, and --check agrees with the test', async () => {
    const text = 'intro\n<!-- config:start -->\nstale\n<!-- config:end -->\noutro\n';
    const updated = replaceConfigSection(text, configReference());
    expect(updated.startsWith('intro\n<!-- config:start -->\n')).toBe(true);
    expect(updated.endsWith('\n<!-- config:end -->\noutro\n')).toBe(true);
    expect(currentConfigSection(updated)).toBe(configReference());
    expect(replaceConfigSection(updated, configReference())).toBe(updated);
    expect(() => replaceConfigSection('no markers', 'x')).toThrow(/config:start/);

    const code = await new Promise<number>((resolve) =>
      execFile(process.execPath, ['--import', 'tsx', 'server/tools/docs-config.ts', '--check'], { cwd: new URL('..', import.meta.url) }, (error) =>
        resolve(error ? ((error as { code?: number }).code ?? 1) : 0),
      ),
    );
    expect(code).toBe(0);
  });
});
