import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // The compiled client package (the CLI, the consumer test's tarball), built once per run.
    globalSetup: ['test/setup/temp-root.ts', 'test/setup/build-client.ts'],
    testTimeout: 30_000,
    hookTimeout: 30_000,
    // Integration tests start real servers and child processes, and mostly wait on them (timers,
    // sockets, other processes): three workers keep 2 cores busy.
    maxWorkers: 3,
    // A poll waits for what a page or a server does next: a second (vitest's default) is short on a
    // loaded machine; only a failing test waits longer.
    expect: { poll: { timeout: 10_000 } },
    reporters: ['default'],
  },
});
