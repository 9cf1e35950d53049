import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { BenchReport } from '../run.ts';
import { chartSvg } from './svg.ts';
import { markdownReport } from './text.ts';

export interface WrittenFiles {
  readonly json: string;
  readonly markdown: string;
  readonly svg: string;
}

/** Writes `<name>.json`, `<name>.md` and `<name>.svg` into `dir`. */
export async function writeReport(report: BenchReport, dir: string, name = 'latest'): Promise<WrittenFiles> {
  await mkdir(dir, { recursive: true });
  const files = { json: join(dir, `${name}.json`), markdown: join(dir, `${name}.md`), svg: join(dir, `${name}.svg`) };
  await writeFile(files.json, `${JSON.stringify(report, null, 2)}\n`);
  await writeFile(files.markdown, markdownReport(report, `${name}.svg`));
  await writeFile(files.svg, chartSvg(report));
  return files;
}
