import type { z } from 'zod';
import { ConfigSchema } from '../config.ts';

/** The README markers between which the generated configuration reference lives. */
export const CONFIG_START = '<!-- config:start -->';
export const CONFIG_END = '<!-- config:end -->';

export interface SettingDoc {
  readonly variable: string;
  readonly flag: string;
  /** The default as shown, or `unset`. */
  readonly defaultValue: string;
  /** What it accepts: a range, the allowed values, or a kind of text. */
  readonly accepts: string;
  readonly meaning: string;
}

// zod v4 exposes each schema's definition as `.def`; only the parts read here are typed.
interface Def {
  readonly type: string;
  readonly innerType?: Schema;
  readonly defaultValue?: unknown;
  readonly in?: Schema;
  readonly checks?: ReadonlyArray<{ readonly _zod: { readonly def: { readonly format?: string; readonly pattern?: RegExp } } }>;
}
interface Schema {
  readonly def: Def;
  readonly description?: string;
  readonly minValue?: number | null;
  readonly maxValue?: number | null;
  readonly isInt?: boolean;
  readonly options?: readonly unknown[];
  readonly format?: string | null;
}

const UNBOUNDED = Number.MAX_SAFE_INTEGER;

function accepts(schema: Schema): string {
  switch (schema.def.type) {
    case 'number': {
      const kind = schema.isInt ? 'integer' : 'number';
      const min = schema.minValue ?? undefined;
      const max = schema.maxValue === UNBOUNDED || schema.maxValue === Infinity ? undefined : (schema.maxValue ?? undefined);
      if (min !== undefined && max !== undefined) return `${kind} ${min}–${max}`;
      if (min !== undefined) return `${kind} ≥ ${min}`;
      if (max !== undefined) return `${kind} ≤ ${max}`;
      return kind;
    }
    case 'enum': {
      const options = (schema.options ?? []).map(String);
      // The boolean settings accept `true`/`false` and `1`/`0`.
      if (options.length === 4 && ['true', 'false', '1', '0'].every((o) => options.includes(o))) return '`true` \\| `false` (or `1` \\| `0`)';
      return options.map((o) => `\`${o}\``).join(' \\| ');
    }
    case 'pipe':
      return schema.def.in ? accepts(schema.def.in) : 'text';
    case 'string': {
      if (schema.format === 'url') return 'URL';
      const pattern = schema.def.checks?.map((c) => c._zod.def.pattern).find((p) => p !== undefined);
      return pattern ? `text matching \`${pattern.source.replaceAll('\\/', '/').replaceAll('|', '\\|')}\`` : 'text';
    }
    case 'boolean':
      return '`true` \\| `false`';
    default:
      return schema.def.type;
  }
}

function showDefault(value: unknown): string {
  if (value === undefined) return 'unset';
  return `\`${typeof value === 'string' ? value : JSON.stringify(value)}\``;
}

const cell = (text: string): string => text.replace(/\r?\n/g, ' ').replace(/(?<!\\)\|/g, '\\|');

/** One entry per setting of ConfigSchema, in the schema's order. */
export function configSettings(): SettingDoc[] {
  const shape = ConfigSchema.shape as unknown as Record<string, z.ZodType>;
  return Object.entries(shape).map(([variable, field]) => {
    let schema = field as unknown as Schema;
    let defaultValue: unknown;
    const meaning = schema.description;
    while (schema.def.type === 'default' || schema.def.type === 'optional' || schema.def.type === 'prefault') {
      if (schema.def.type !== 'optional' && defaultValue === undefined) defaultValue = schema.def.defaultValue;
      schema = schema.def.innerType!;
    }
    if (!meaning) throw new Error(`server/config.ts: ${variable} has no .describe(); every setting needs one`);
    return {
      variable,
      flag: `--${variable.toLowerCase().replaceAll('_', '-')}`,
      defaultValue: showDefault(defaultValue),
      accepts: accepts(schema),
      meaning,
    };
  });
}

/** The README section between the markers (markers excluded), generated from ConfigSchema. */
export function configReference(): string {
  const rows = configSettings().map((s) => `| \`${s.variable}\` | \`${s.flag}\` | ${cell(s.defaultValue)} | ${s.accepts} | ${cell(s.meaning)} |`);
  return [
    '<!-- Generated from ConfigSchema in server/config.ts by `npm run docs:config`; do not edit by hand. -->',
    '',
    '| variable | flag | default | accepts | meaning |',
    '|---|---|---|---|---|',
    ...rows,
  ].join('\n');
}

/** `readme` with its marked section replaced by `section`; throws when the markers are missing. */
export function replaceConfigSection(readme: string, section: string): string {
  const start = readme.indexOf(CONFIG_START);
  const end = readme.indexOf(CONFIG_END);
  if (start === -1 || end === -1 || end < start) {
    throw new Error(`README.md needs the markers ${CONFIG_START} and ${CONFIG_END}, in that order`);
  }
  return `${readme.slice(0, start + CONFIG_START.length)}\n${section}\n${readme.slice(end)}`;
}

/** The marked section as it is in `readme` (markers excluded), or undefined without markers. */
export function currentConfigSection(readme: string): string | undefined {
  const start = readme.indexOf(CONFIG_START);
  const end = readme.indexOf(CONFIG_END);
  if (start === -1 || end === -1 || end < start) return undefined;
  return readme
    .slice(start + CONFIG_START.length, end)
    .replace(/^\n/, '')
    .replace(/\n$/, '');
}
