import { readFile, writeFile } from 'node:fs/promises';

// `--update-readme`: puts the latest figures into README.md, between two marker comments of the
// "Benchmarks" section, so that the README always quotes a real run.

export const README_START = '<!-- bench:latest:start -->';
export const README_END = '<!-- bench:latest:end -->';

export async function updateReadme(readmePath: string, markdown: string): Promise<void> {
  const text = await readFile(readmePath, 'utf8');
  const start = text.indexOf(README_START);
  const end = text.indexOf(README_END);
  if (start === -1 || end < start) throw new Error(`${readmePath} has no ${README_START} … ${README_END} block`);
  const body = markdown.replace('](latest.svg)', '](bench/results/latest.svg)');
  await writeFile(readmePath, `${text.slice(0, start + README_START.length)}\n${body.trim()}\n${text.slice(end)}`);
}
