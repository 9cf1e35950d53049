import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { REPO_ROOT } from './helpers/children.ts';
import { startServer } from './helpers/server.ts';

interface Run {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}
function run(command: string, args: readonly string[], cwd: string): Promise<Run> {
  return new Promise((resolve) => {
    execFile(command, args, { cwd, env: process.env, maxBuffer: 16 * 1024 * 1024 }, (error, stdout, stderr) =>
      resolve({ code: error ? (typeof error.code === 'number' ? error.code : 1) : 0, stdout, stderr }),
    );
  });
}

// An app that already uses tRPC 11 (its own @trpc/client, as a tRPC app has) installs sluice-client
// beside it: @trpc/client and @trpc/server are the client's peers, so there is one copy of each
// (`instanceof TRPCClientError` holds for Sluice's errors), and an app whose tRPC is older than the
// client needs is told so at install, not given a second copy silently.
const NEEDED_TRPC = '11.25.2';
const OLDER_TRPC = '11.22.1';

const CATCH_MJS = `import { TRPCClientError } from '@trpc/client';
import { closeChatClient, createChatClient } from 'sluice-client';

const client = createChatClient({ url: process.argv[2], transport: 'sse', apiKey: 'k-wrong-0123456789' });
try {
  await client.chat.history.query({ sessionId: 's' });
} catch (error) {
  console.log(JSON.stringify({ instanceOfAppTRPCClientError: error instanceof TRPCClientError, sluiceCode: error.data?.sluiceCode }));
}
await closeChatClient(client);
`;

async function appWith(dir: string, tarball: string, trpc: string): Promise<{ app: string; install: Run }> {
  const app = join(dir, `app-${trpc}`);
  mkdirSync(app, { recursive: true });
  writeFileSync(
    join(app, 'package.json'),
    JSON.stringify({
      name: 'trpc-app',
      private: true,
      type: 'module',
      dependencies: { '@trpc/client': trpc, '@trpc/server': trpc, 'sluice-client': `file:${tarball}` },
    }),
  );
  const install = await run('npm', ['install', '--prefer-offline', '--no-audit', '--no-fund', '--ignore-scripts', '--loglevel=error'], app);
  return { app, install };
}

describe('sluice-client in an app that has its own @trpc/client 11', () => {
  const dir = mkdtempSync(join(tmpdir(), 'sluice-peers-consumer-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it(
    "uses the app's tRPC (one copy): the client's errors are the app's TRPCClientError; an older tRPC is refused at install",
    { timeout: 240_000 },
    async () => {
      const pack = await run('npm', ['pack', '--workspace', 'client', '--pack-destination', dir, '--json'], REPO_ROOT);
      expect(pack.code, pack.stderr).toBe(0);
      const tarball = join(dir, (JSON.parse(pack.stdout) as Array<{ filename: string }>)[0]!.filename);

      const { app, install } = await appWith(dir, tarball, NEEDED_TRPC);
      expect(install.code, install.stderr).toBe(0);
      writeFileSync(join(app, 'catch.mjs'), CATCH_MJS);
      const server = await startServer({ API_KEYS: 'k-alice-0123456789' });
      const result = await run(process.execPath, ['catch.mjs', server.url], app);
      expect(result.code, result.stderr).toBe(0);
      const nested = (() => {
        try {
          return (JSON.parse(readFileSync(join(app, 'node_modules/sluice-client/node_modules/@trpc/client/package.json'), 'utf8')) as { version: string })
            .version;
        } catch {
          return 'none';
        }
      })();
      expect({ ...JSON.parse(result.stdout), nestedTrpcClient: nested }).toEqual({
        instanceOfAppTRPCClientError: true,
        sluiceCode: 'unauthorized',
        nestedTrpcClient: 'none',
      });

      const older = await appWith(dir, tarball, OLDER_TRPC);
      expect(older.install.code).not.toBe(0);
      expect(older.install.stderr).toMatch(/ERESOLVE|peer @trpc\/client/);
    },
  );
});
