import { describe, expect, it } from 'vitest';
import { CHAT_BIN } from './helpers/chat-cli.ts';
import { startFakeUpstream } from './helpers/fake-upstream.ts';
import { startServer } from './helpers/server.ts';
import { startInTmux } from './helpers/tmux.ts';

describe('sluice-chat at a terminal: a CRLF line end the model wrote', () => {
  it('is shown as a line end whether or not the stream split it between two deltas (as /history shows it)', async () => {
    // Tokenizers have "\r" and "\n" as tokens of their own: a CRLF may come in two deltas.
    const upstream = await startFakeUpstream({ kind: 'ok', tokens: ['first line\r', '\nsecond line'] });
    const server = await startServer({ LLM_PROVIDER: 'openai', OPENAI_BASE_URL: upstream.baseURL, LLM_MODEL: 'm' });
    const term = await startInTmux([...CHAT_BIN, '--url', server.url, '--session', 'tty-crlf']);
    if (!term) return;
    await term.waitFor(/you> $/m);
    await term.line('hello');
    const screen = await term.waitFor(/\(first token \d+ ms/);
    await term.line('/quit');
    await term.waitFor(/\[exited 0\]/);
    expect(screen).not.toContain('\u240d');
    expect(screen).toMatch(/first line\n\s*second line/);
  });
});
