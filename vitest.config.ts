import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // The compiled client package (the CLI, the consumer test's tarball), built once per run.
    globalSetup: ['test/setup/temp-root.ts', 'test/setup/build-client.ts'],
    testTimeout: 30_000,
    hookTimeout: 30_000,
    // Integration tests start real servers and child processes; two workers match the 2-core budget.
    maxWorkers: 2,
    reporters: ['default'],
  },
});
