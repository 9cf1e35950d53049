import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it, vi } from 'vitest';
import { simulatedDeltas } from '../server/core/providers/simulated.ts';
import { EXIT } from '../client/cli/exit-codes.ts';
import { CHAT_BIN, runChat, spawnChat } from './helpers/chat-cli.ts';
import { freePort } from './helpers/ports.ts';
import { startFakeUpstream } from './helpers/fake-upstream.ts';
import { startIdentityProvider } from './helpers/identity-provider.ts';
import { startServer, type TestServer } from './helpers/server.ts';
import { streamSseRoute } from './helpers/sse.ts';
import { startTcpProxy } from './helpers/tcp-proxy.ts';
import { startInTmux } from './helpers/tmux.ts';

const reply = (message: string): string => simulatedDeltas(message).join('');

async function history(server: TestServer, sessionId: string): Promise<Array<{ role: string; status: string; content: string }>> {
  const res = await fetch(`${server.url}/v1/sessions/${sessionId}/messages`);
  const body = (await res.json()) as { messages: Array<{ role: string; status: string; content: string }> };
  return body.messages;
}

const root = fileURLToPath(new URL('..', import.meta.url));
function runShell(script: string): Promise<{ stdout: string; stderr: string }> {
  return new Promise((resolve, reject) =>
    execFile('bash', ['-c', script], { cwd: root, env: { ...process.env, NO_COLOR: '1' } }, (error, stdout, stderr) =>
      error ? reject(error) : resolve({ stdout, stderr }),
    ),
  );
}

const count = (text: string, part: string): number => text.split(part).length - 1;

describe('sluice-chat in a terminal (tmux)', () => {
  it('streams each reply as it arrives, shows transport and speed, and /history shows both turns', async () => {
    const server = await startServer({ SIM_DELAY_MS: 40 });
    const term = await startInTmux([...CHAT_BIN, '--url', server.url, '--session', 'tty-1']);
    if (!term) return;
    await term.waitFor(/over WebSocket · session tty-1/);
    await term.waitFor(/you> $/m);

    await term.line('explain caching');
    // Part of the reply is on the screen while the rest is still coming: it streams.
    const partial = await term.waitFor((s) => expect(s).toContain("Based on your query about 'explain caching'"));
    expect(partial).not.toContain('first token');
    let screen = await term.waitFor(/\(first token \d+ ms · 39 tokens · [\d.]+ tokens\/s\)/);
    expect(screen).toContain(reply('explain caching').trimEnd());

    await term.line('and sessions?');
    screen = await term.waitFor((s) => expect(count(s, '(first token')).toBe(2));
    expect(screen).toContain(reply('and sessions?').trimEnd());

    await term.line('/history');
    screen = await term.waitFor(/Session tty-1: 4 messages/);
    expect(screen).toContain('1. user [complete]: explain caching');
    expect(screen).toContain(`2. assistant [complete]: ${reply('explain caching').trimEnd()}`);
    expect(screen).toContain('3. user [complete]: and sessions?');
    expect(screen).toContain(`4. assistant [complete]: ${reply('and sessions?').trimEnd()}`);

    await term.line('/quit');
    await term.waitFor(/\[exited 0\]/);
  });

  it('Ctrl-C during a reply cancels it on the server and returns to the prompt; Ctrl-C at the prompt quits', async () => {
    // Slow tokens, and a long resume window: the stop must come from the client's cancel.
    const server = await startServer({ SIM_DELAY_MS: 150, RESUME_GRACE_MS: 60_000 });
    const term = await startInTmux([...CHAT_BIN, '--url', server.url, '--session', 'tty-2']);
    if (!term) return;
    await term.waitFor(/you> $/m);
    await term.line('tell me everything');
    await term.waitFor((s) => expect(s).toContain("Based on your query about 'tell me everything'"));
    expect(server.sluice.service.runningCount).toBe(1);

    await term.press('C-c');
    let screen = await term.waitFor(/\(cancelled · first token \d+ ms/);
    // Cancelled on the server, long before the reply would have ended.
    await vi.waitFor(() => expect(server.sluice.service.runningCount).toBe(0));
    const messages = await history(server, 'tty-2');
    expect(messages.map((m) => [m.role, m.status])).toEqual([
      ['user', 'complete'],
      ['assistant', 'interrupted'],
    ]);
    expect(messages[1]!.content.length).toBeLessThan(reply('tell me everything').length);
    // Still running, back at the prompt.
    expect(screen).not.toContain('[exited');
    await term.waitFor(/you> $/m);

    await term.line('/history');
    screen = await term.waitFor(/Session tty-2: 2 messages/);
    expect(screen).toContain('1. user [complete]: tell me everything');
    expect(screen).toMatch(/2\. assistant \[interrupted\]: Based on your query/);

    await term.press('C-c');
    await term.waitFor(/\[exited 0\]/);
  });

  it('falls back to SSE when WebSocket upgrades are refused, says so, and Ctrl-D quits', async () => {
    const server = await startServer({ WS_ENABLED: false });
    const term = await startInTmux([...CHAT_BIN, '--url', server.url, '--session', 'tty-3', '--transport', 'auto']);
    if (!term) return;
    await term.waitFor(/over SSE \(WebSocket unavailable\) · session tty-3/);
    await term.line('hello');
    const screen = await term.waitFor(/\(first token \d+ ms · \d+ tokens/);
    expect(screen).toContain(reply('hello').trimEnd());
    await term.line('/help');
    await term.waitFor(/\/history {3}the session's messages/);
    await term.press('C-d');
    await term.waitFor(/\[exited 0\]/);
    expect((await history(server, 'tty-3')).map((m) => m.status)).toEqual(['complete', 'complete']);
  });
});

// A model's text is not the terminal's to obey: a reply (steered by a page the model read, say)
// that holds escape sequences must not clear what is on screen, retitle the window, write the
// clipboard (OSC 52) or move the cursor over earlier text.
describe("sluice-chat shows a reply's control characters, and a terminal never obeys them", () => {
  const HOSTILE = ['visible', '\x1b[2K\r', 'after', '\x1b]52;c;cHduZWQ=\x07', ' \x9b31m', 'end'];
  const upstreamServer = async (): Promise<TestServer> => {
    const upstream = await startFakeUpstream({ kind: 'ok', tokens: HOSTILE });
    return startServer({ LLM_PROVIDER: 'openai', OPENAI_BASE_URL: upstream.baseURL, LLM_MODEL: 'm' });
  };

  it('at a terminal: the reply and /history show each control character as a visible sign', async () => {
    const server = await upstreamServer();
    const term = await startInTmux([...CHAT_BIN, '--url', server.url, '--session', 'tty-esc']);
    if (!term) return;
    await term.waitFor(/you> $/m);
    await term.line('hello');
    let screen = await term.waitFor(/\(first token \d+ ms/);
    // Obeyed, `ESC [2K` erases "visible" and `CR` puts "after" at the line's start.
    expect(screen).toContain('visible\u241b[2K\u240dafter\u241b]52;c;cHduZWQ=\u2407 \\x9b31mend');
    await term.line('/history');
    screen = await term.waitFor(/Session tty-esc: 2 messages/);
    expect(screen).toContain('2. assistant [complete]: visible\u241b[2K\u240dafter\u241b]52;c;cHduZWQ=\u2407 \\x9b31mend');
    await term.line('/quit');
    await term.waitFor(/\[exited 0\]/);
  });

  it('into a pipe: the reply is written as the model sent it', async () => {
    const server = await upstreamServer();
    const { code, stdout } = await runChat(['--url', server.url, '--message', 'hello', '--quiet']);
    expect(code).toBe(EXIT.ok);
    expect(stdout).toBe(`${HOSTILE.join('')}\n`);
  });
});

describe('sluice-chat reconnects (tmux)', () => {
  it('says when the connection drops at the prompt and when it is back, then chats on', async () => {
    const server = await startServer();
    const proxy = await startTcpProxy(server.url);
    const term = await startInTmux([...CHAT_BIN, '--url', proxy.url, '--session', 'tty-drop', '--transport', 'ws']);
    if (!term) return;
    await term.waitFor(/you> $/m);
    proxy.dropAll();
    await term.waitFor(/\[connection lost, reconnecting…\]/);
    await term.waitFor(/\[reconnected\]\nyou> $/m);
    await term.line('still there?');
    const screen = await term.waitFor(/\(first token \d+ ms/);
    expect(screen).toContain(reply('still there?').trimEnd());
  });
});

describe('sluice-chat --message (one-shot)', () => {
  it.each(['ws', 'sse', 'auto'] as const)('prints the reply on stdout and exits 0 (transport %s)', async (transport) => {
    const server = await startServer();
    const result = await runChat(['--url', server.url, '--transport', transport, '--session', `one-${transport}`, '--message', 'explain caching']);
    expect(result.code).toBe(EXIT.ok);
    expect(result.stdout).toBe(`${reply('explain caching')}\n`);
    expect(result.stderr).toContain(`over ${transport === 'sse' ? 'SSE' : 'WebSocket'} · session one-${transport}`);
    expect(result.stderr).toMatch(/\(first token \d+ ms · 39 tokens · [\d.]+ tokens\/s\)/);
    expect((await history(server, `one-${transport}`)).map((m) => m.status)).toEqual(['complete', 'complete']);
  });

  it('--quiet prints only the reply', async () => {
    const server = await startServer();
    const result = await runChat(['--url', server.url, '-q', '-m', 'hi']);
    expect(result).toEqual({ code: EXIT.ok, stdout: `${reply('hi')}\n`, stderr: '' });
  });

  it('exits 3 when the server cannot be reached', async () => {
    const port = await freePort();
    for (const transport of ['auto', 'sse'] as const) {
      const result = await runChat(['--url', `http://127.0.0.1:${port}`, '--transport', transport, '-m', 'hello']);
      expect(result.code).toBe(EXIT.connection);
      expect(result.stdout).toBe('');
      expect(result.stderr).toContain(`cannot reach http://127.0.0.1:${port}: ECONNREFUSED`);
    }
  });

  it('exits 4 when the session is busy, naming the reason', async () => {
    const server = await startServer({ SIM_DELAY_MS: 200 });
    const frames = streamSseRoute(server.url, { message: 'long one', session_id: 'busy' });
    await frames.next(); // the other reply is running
    const result = await runChat(['--url', server.url, '--session', 'busy', '-m', 'me too']);
    expect(result.code).toBe(EXIT.refused);
    expect(result.stdout).toBe('');
    expect(result.stderr).toMatch(/error: session_busy: /);
    await fetch(`${server.url}/v1/chat/cancel`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"session_id": "busy"}' });
    const rest: string[] = [];
    for await (const frame of frames) rest.push(frame.event ?? 'message');
    expect(rest.at(-1)).toBe('error'); // the other reply, cancelled
  });

  it('exits 5 when the reply is cancelled on the server, and 130 on Ctrl-C (which cancels it)', async () => {
    const server = await startServer({ SIM_DELAY_MS: 100, RESUME_GRACE_MS: 60_000 });
    const cancelledElsewhere = spawnChat(['--url', server.url, '--session', 'c5', '-m', 'go on']);
    await vi.waitFor(() => expect(cancelledElsewhere.stdout()).toContain('Based on'), { timeout: 15_000 });
    await fetch(`${server.url}/v1/chat/cancel`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"session_id": "c5"}' });
    expect(await cancelledElsewhere.exited).toBe(EXIT.cancelled);
    expect(cancelledElsewhere.stderr()).toContain('cancelled on the server');

    const interrupted = spawnChat(['--url', server.url, '--session', 'c130', '-m', 'go on']);
    await vi.waitFor(() => expect(interrupted.stdout()).toContain('Based on'), { timeout: 15_000 });
    interrupted.child.kill('SIGINT');
    expect(await interrupted.exited).toBe(EXIT.interrupted);
    await vi.waitFor(() => expect(server.sluice.service.runningCount).toBe(0));
    expect((await history(server, 'c130')).map((m) => m.status)).toEqual(['complete', 'interrupted']);
  });

  it('sends --key (or SLUICE_API_KEY) as the API key; without one the server refuses (exit 4)', async () => {
    const key = 'sk-test-0123456789abcdef';
    const server = await startServer({ API_KEYS: key });
    for (const transport of ['ws', 'sse'] as const) {
      const ok = await runChat(['--url', server.url, '--transport', transport, '-q', '--key', key, '-m', 'hi']);
      expect(ok).toEqual({ code: EXIT.ok, stdout: `${reply('hi')}\n`, stderr: '' });
      const fromEnv = await runChat(['--url', server.url, '--transport', transport, '-q', '-m', 'hi'], { SLUICE_API_KEY: key });
      expect(fromEnv.code).toBe(EXIT.ok);
      const refused = await runChat(['--url', server.url, '--transport', transport, '-q', '-m', 'hi']);
      expect(refused.code).toBe(EXIT.refused);
      expect(refused.stderr).toMatch(/error: (unauthorized|UNAUTHORIZED): /);
    }
  });

  it("sends --token (or SLUICE_TOKEN) as a user's token; a key and a token together are a usage error", async () => {
    const idp = await startIdentityProvider();
    const server = await startServer({ AUTH_JWKS_URL: idp.jwksUrl });
    const token = await idp.token('alice');
    for (const transport of ['ws', 'sse'] as const) {
      const ok = await runChat(['--url', server.url, '--transport', transport, '-q', '--token', token, '--session', 'mine', '-m', 'hi']);
      expect(ok).toEqual({ code: EXIT.ok, stdout: `${reply('hi')}\n`, stderr: '' });
      expect((await runChat(['--url', server.url, '--transport', transport, '-q', '-m', 'hi'], { SLUICE_TOKEN: token })).code).toBe(EXIT.ok);
    }
    const both = await runChat(['--url', server.url, '--key', 'k'.repeat(16), '--token', token, '-m', 'hi']);
    expect(both.code).toBe(EXIT.usage);
    expect(both.stderr).toContain('not both');
  });

  it('stops and cancels the reply when its reader goes away (| head), without a crash', async () => {
    const server = await startServer({ SIM_DELAY_MS: 100, RESUME_GRACE_MS: 60_000 });
    const script = `${CHAT_BIN.join(' ')} --url ${server.url} --session piped -m 'go on' | head -c 5; echo " [exit \${PIPESTATUS[0]}]"`;
    const result = await runShell(script);
    expect(result.stdout).toBe('Based [exit 130]\n');
    expect(result.stderr).not.toMatch(/EPIPE|node:events/);
    await vi.waitFor(() => expect(server.sluice.service.runningCount).toBe(0));
    expect((await history(server, 'piped')).map((m) => m.status)).toEqual(['complete', 'interrupted']);
  });

  it('exits 2 on bad flags, with the usage', async () => {
    const result = await runChat(['--transport', 'carrier-pigeon']);
    expect(result.code).toBe(EXIT.usage);
    expect(result.stderr).toContain('--transport must be ws, sse or auto');
    expect(result.stderr).toContain('Exit codes:');
  });

  it.each(['ws', 'sse'] as const)('over %s, reconnects after a dropped connection and resumes the reply, telling the user', async (transport) => {
    const server = await startServer({ SIM_DELAY_MS: 60, RESUME_GRACE_MS: 20_000 });
    const proxy = await startTcpProxy(server.url);
    const chat = spawnChat(['--url', proxy.url, '--transport', transport, '--session', `drop-${transport}`, '-m', 'explain caching']);
    await vi.waitFor(() => expect(chat.stdout()).toContain('Based on'), { timeout: 15_000 });
    proxy.dropAll();
    await vi.waitFor(() => expect(chat.stderr()).toContain('[connection lost, reconnecting…]'), { timeout: 15_000 });
    expect(await chat.exited).toBe(EXIT.ok);
    expect(chat.stderr()).toContain('[reconnected, resuming]');
    // Every token exactly once, in order: the reply resumed where it was, not restarted.
    expect(chat.stdout().replace(/\n/g, '')).toBe(reply('explain caching'));
    expect((await history(server, `drop-${transport}`)).map((m) => m.status)).toEqual(['complete', 'complete']);
  });
});

describe('sluice-chat with its input piped (no terminal)', () => {
  it('answers every line it reads, then exits 0 at the end of the input; with the server away, says so on stderr and exits 3', async () => {
    const server = await startServer({ SIM_DELAY_MS: 5 });
    // Both lines and the end of input arrive before the connection is even checked.
    const chat = spawnChat(['--url', server.url, '--session', 'piped'], {}, 'first\nsecond\n');
    expect(await chat.exited).toBe(EXIT.ok);
    expect(chat.stdout()).toContain(reply('first'));
    expect(chat.stdout()).toContain(reply('second'));
    expect((await history(server, 'piped')).map((m) => [m.role, m.status, m.content])).toEqual([
      ['user', 'complete', 'first'],
      ['assistant', 'complete', reply('first')],
      ['user', 'complete', 'second'],
      ['assistant', 'complete', reply('second')],
    ]);

    const down = spawnChat(['--url', `http://127.0.0.1:${await freePort()}`, '--transport', 'sse'], {}, 'hello\n');
    expect(await down.exited).toBe(EXIT.connection);
    expect(down.stderr()).toMatch(/cannot reach/);
  });
});
