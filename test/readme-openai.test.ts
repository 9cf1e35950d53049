import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { simulatedDeltas } from '../server/core/providers/simulated.ts';
import { ChatCompletionChunk } from '../shared/index.ts';
import { requireBinary } from './helpers/binaries.ts';
import { startServer } from './helpers/server.ts';

const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8');

/** The fenced block right after a `<!-- name -->` marker, and the next fenced block after it. */
function blocksAfter(name: string): [string, string] {
  const match = new RegExp(`<!-- ${name} -->\\s*\`\`\`\\w*\\n([\\s\\S]*?)\`\`\`[\\s\\S]*?\`\`\`\\w*\\n([\\s\\S]*?)\`\`\``).exec(readme);
  if (!match) throw new Error(`README has no block marked <!-- ${name} -->`);
  return [match[1]!, match[2]!];
}

// What changes from one run to the next: the reply's id and its time.
const normalize = (line: string) => line.replace(/"chatcmpl-[^"]+"/, '"chatcmpl-X"').replace(/"created":\d+/, '"created":0');

describe('README: the OpenAI-compatible endpoint', () => {
  it('its curl example prints the documented chunks and [DONE]', async () => {
    const curl = requireBinary('curl');
    if (!curl) return;
    const { url } = await startServer();
    const [example, shown] = blocksAfter('openai-curl-example');
    const command = example
      .trim()
      .replace(/\\\n\s*/g, '')
      .replace('http://localhost:8000', url);
    const printed = await new Promise<string>((resolve, reject) =>
      execFile('bash', ['-c', command], { timeout: 20_000 }, (error, stdout) => (error ? reject(error) : resolve(stdout))),
    );
    expect(printed, command).toContain('data: ');
    const data = printed.split('\n').filter((l) => l.startsWith('data: '));
    expect(data.at(-1)).toBe('data: [DONE]');
    const chunks = data.slice(0, -1).map((l) => ChatCompletionChunk.parse(JSON.parse(l.slice(6))));
    expect(chunks.map((c) => c.choices[0]?.delta.content ?? '').join('')).toBe(simulatedDeltas('explain caching').join(''));
    // Every line the README shows is printed, up to the id and the time.
    const printedLines = data.map(normalize);
    const shownLines = shown.split('\n').filter((l) => l.startsWith('data: '));
    expect(shownLines.length).toBeGreaterThan(3);
    for (const line of shownLines) expect(printedLines).toContain(normalize(line));
  });
});
