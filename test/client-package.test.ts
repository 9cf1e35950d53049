import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as esbuild from 'esbuild';
import { afterAll, describe, expect, it } from 'vitest';
import { simulatedDeltas } from '../server/core/providers/simulated.ts';
import { REPO_ROOT } from './helpers/children.ts';
import { startIdentityProvider } from './helpers/identity-provider.ts';
import { startServer } from './helpers/server.ts';

// sluice-client as another project gets it: `npm pack --workspace client`, installed from the
// tarball into a fresh project, type-checked by tsc (strict, NodeNext, no special flags), run by
// plain node against a real server, bundled for browsers by esbuild.

interface Run {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

function run(command: string, args: readonly string[], cwd: string, env: Record<string, string> = {}): Promise<Run> {
  return new Promise((resolve) => {
    execFile(command, args, { cwd, env: { ...process.env, ...env }, maxBuffer: 16 * 1024 * 1024 }, (error, stdout, stderr) =>
      resolve({ code: error ? (typeof error.code === 'number' ? error.code : 1) : 0, stdout, stderr }),
    );
  });
}

/** Packages of the server that a client must never install. */
const SERVER_PACKAGES = ['ioredis', 'openai', 'pino', 'prom-client', 'esbuild', 'tsx', 'gpt-tokenizer', '@photostructure/sqlite', 'postgres', 'jose', 'undici'];
/** The fenced block right after a `<!-- name -->` marker in the README. */
function readmeBlock(name: string): string {
  const readme = readFileSync(join(REPO_ROOT, 'README.md'), 'utf8');
  const match = new RegExp(`<!-- ${name} -->\\s*\`\`\`\\w*\\n([\\s\\S]*?)\`\`\``).exec(readme);
  if (!match) throw new Error(`README has no block marked <!-- ${name} -->`);
  return match[1]!;
}
const rootVersion = (name: string): string =>
  (JSON.parse(readFileSync(join(REPO_ROOT, 'node_modules', name, 'package.json'), 'utf8')) as { version: string }).version;

const STREAM_TS = `import { closeChatClient, createChatClient, streamChat, type ChatMessage, type StreamEvent } from 'sluice-client';

const [url, transport] = process.argv.slice(2);
if (!url || (transport !== 'ws' && transport !== 'sse')) throw new Error('usage: stream.js <url> ws|sse');
const client = createChatClient({ url, transport, getToken: async () => process.env.SLUICE_TOKEN });
const sessionId = \`consumer-\${transport}\`;

let text = '';
let chunks = 0;
for await (const event of streamChat(client, { message: 'hello from a consumer', sessionId })) {
  const seen: StreamEvent = event;
  switch (seen.type) {
    case 'delta':
      text += seen.delta;
      break;
    case 'done':
      chunks = seen.totalChunks;
      break;
    case 'error':
      throw new Error(\`\${seen.code}: \${seen.message}\`);
    default: {
      const unexpected: never = seen;
      throw new Error(String(unexpected));
    }
  }
}
const history = await client.chat.history.query({ sessionId, limit: 10 });
const roles: Array<ChatMessage['role']> = history.messages.map((m) => m.role);
const status: 'complete' | 'interrupted' | 'failed' = history.messages[1]!.status;
const cancelled: boolean = (await client.chat.cancel.mutate({ sessionId })).cancelled;
console.log(JSON.stringify({ text, chunks, roles, status, cancelled }));
await closeChatClient(client);
`;

const MISSPELLED_TS = `import { createChatClient } from 'sluice-client';

const client = createChatClient({ url: 'http://localhost:8000' });
await client.chat.history.query({ sesionId: 'demo' });
`;

const BROWSER_TS = `import { createChatClient, streamChat } from 'sluice-client/browser';
import { createChatClient as viaBrowserCondition } from 'sluice-client';
import { StreamEvent } from 'sluice-client/schemas';

const client = createChatClient({ url: location.origin, getToken: () => sessionStorage.getItem('token') });
for await (const event of streamChat(client, { message: 'hi' })) document.body.append(StreamEvent.parse(event).type);
console.log(viaBrowserCondition);
`;

describe('sluice-client, installed from its tarball in a fresh project', () => {
  const dir = mkdtempSync(join(tmpdir(), 'sluice-consumer-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it(
    'packs cleanly, installs without the server, type-checks with full types, runs under plain node over WebSocket and SSE, bundles for browsers',
    { timeout: 240_000 },
    async () => {
      const timings: Record<string, number> = {};
      const timed = async <T>(name: string, step: () => Promise<T>): Promise<T> => {
        const start = performance.now();
        try {
          return await step();
        } finally {
          timings[name] = Math.round(performance.now() - start);
        }
      };

      // The tarball, as a release makes it (its prepack compiles the package).
      const pack = await timed('pack', () => run('npm', ['pack', '--workspace', 'client', '--pack-destination', dir, '--json'], REPO_ROOT));
      expect(pack.code, pack.stderr).toBe(0);
      const tarball = join(dir, (JSON.parse(pack.stdout) as Array<{ filename: string }>)[0]!.filename);
      const files = (JSON.parse(pack.stdout) as Array<{ files: Array<{ path: string }> }>)[0]!.files.map((f) => f.path);
      expect(files).toContain('dist/client/index.js');
      expect(files).toContain('dist/client/index.d.ts');
      expect(files.filter((f) => !f.startsWith('dist/') && f !== 'package.json')).toEqual([]);
      // The package's own checks run while the fresh project below installs it.
      const lint = timed('publint', () => run(process.execPath, [join(REPO_ROOT, 'node_modules/publint/src/cli.js'), 'run', tarball, '--strict'], dir));
      const attw = timed('attw', () =>
        run(process.execPath, [join(REPO_ROOT, 'node_modules/@arethetypeswrong/cli/dist/index.js'), tarball, '--profile', 'esm-only'], dir),
      );

      // A fresh TypeScript project for Node that depends on the tarball. (It brings its own
      // typescript, which @trpc/client wants as a peer; the versions are the root's, from npm's cache.)
      const app = join(dir, 'app');
      mkdirSync(join(app, 'src'), { recursive: true });
      writeFileSync(
        join(app, 'package.json'),
        JSON.stringify({
          name: 'consumer',
          private: true,
          type: 'module',
          dependencies: { 'sluice-client': `file:${tarball}` },
          devDependencies: { '@types/node': rootVersion('@types/node'), typescript: rootVersion('typescript') },
        }),
      );
      const install = await timed('npm install', () =>
        run('npm', ['install', '--prefer-offline', '--no-audit', '--no-fund', '--ignore-scripts', '--loglevel=error'], app),
      );
      expect(install.code, install.stderr).toBe(0);
      const [linted, typesChecked] = await Promise.all([lint, attw]);
      expect(linted.code, linted.stdout + linted.stderr).toBe(0);
      expect(typesChecked.code, typesChecked.stdout + typesChecked.stderr).toBe(0);
      const installed = readdirSync(join(app, 'node_modules'));
      expect(installed).toContain('sluice-client');
      for (const name of SERVER_PACKAGES) expect(installed, name).not.toContain(name);

      writeFileSync(join(app, 'src/stream.ts'), STREAM_TS);
      writeFileSync(join(app, 'src/misspelled.ts'), MISSPELLED_TS);
      writeFileSync(join(app, 'src/browser.ts'), BROWSER_TS);
      writeFileSync(join(app, 'src/readme-example.ts'), readmeBlock('client-example'));
      const compilerOptions = { strict: true, module: 'NodeNext', moduleResolution: 'NodeNext', target: 'ES2022', outDir: 'dist' };
      writeFileSync(
        join(app, 'tsconfig.json'),
        JSON.stringify({ compilerOptions, files: ['src/stream.ts', 'src/browser.ts', 'src/readme-example.ts', 'src/misspelled.ts'] }),
      );

      // One run of tsc (it checks the libraries' declarations too, which takes most of its time): the
      // misspelled field is the only error; the other files, the README's example among them, compile
      // (tsc emits them anyway).
      const tsc = await timed('tsc', () => run(process.execPath, ['node_modules/typescript/bin/tsc', '-p', 'tsconfig.json'], app));
      const errors = tsc.stdout.split('\n').filter((line) => /error TS\d+/.test(line));
      expect(errors, tsc.stdout + tsc.stderr).toHaveLength(1);
      expect(errors[0]).toMatch(/^src\/misspelled\.ts\(4,\d+\): error TS\d+: .*'sesionId'/);

      // The compiled file, run by plain node, against a real server that wants a user's token.
      const idp = await startIdentityProvider();
      const server = await startServer({ AUTH_JWKS_URL: idp.jwksUrl });
      const token = await idp.token('consumer');
      for (const transport of ['ws', 'sse']) {
        const result = await timed(`node (${transport})`, () => run(process.execPath, ['dist/stream.js', server.url, transport], app, { SLUICE_TOKEN: token }));
        expect(result.code, result.stderr).toBe(0);
        expect(JSON.parse(result.stdout)).toEqual({
          text: simulatedDeltas('hello from a consumer').join(''),
          chunks: simulatedDeltas('hello from a consumer').length,
          roles: ['user', 'assistant'],
          status: 'complete',
          cancelled: false,
        });
      }
      const refused = await run(process.execPath, ['dist/stream.js', server.url, 'sse'], app, { SLUICE_TOKEN: 'garbage' });
      expect(refused.code).not.toBe(0);
      expect(refused.stderr).toContain('A valid API key or token is required');

      // The browser entry bundles without anything from Node, whichever way it is imported.
      const bundle = await timed('esbuild', () =>
        esbuild.build({
          entryPoints: [join(app, 'src/browser.ts')],
          absWorkingDir: app,
          bundle: true,
          write: false,
          format: 'esm',
          platform: 'browser',
          target: 'es2022',
          metafile: true,
          logLevel: 'silent',
        }),
      );
      const inputs = Object.keys(bundle.metafile.inputs);
      expect(inputs.some((input) => input.includes('sluice-client/dist/client/browser.js'))).toBe(true);
      expect(inputs.filter((input) => /node_modules\/(ws|eventsource)\//.test(input) || input.includes('client/index.js'))).toEqual([]);
      console.log(`client package test steps (ms): ${JSON.stringify(timings)}`);
    },
  );
});
