import { describe, expect, it } from 'vitest';
import { estimateUsage } from '../server/core/usage.ts';

describe('usage estimate with the prompt counting budget', () => {
  it('a longer prompt is never estimated at fewer tokens than a shorter one of the same text (a 600,000-character message, MAX_MESSAGE_CHARS raised)', async () => {
    // Text of about one token a character (CJK): the budget's fallback rate is 0.25 a character.
    const text = (n: number) => Array.from({ length: n }, (_, i) => String.fromCharCode(0x4e00 + ((i * 7919) % 20000))).join('');
    const shorter = await estimateUsage([{ role: 'user', content: text(400_000) }], 'ok');
    const longer = await estimateUsage([{ role: 'user', content: text(600_000) }], 'ok');
    expect(shorter).toBeDefined();
    expect(longer!.promptTokens).toBeGreaterThanOrEqual(shorter!.promptTokens);
  }, 60_000);
});
