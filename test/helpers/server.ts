import { afterEach, expect, vi } from 'vitest';
import { pino } from 'pino';
import { createSluice, type Sluice, type SluiceOverrides } from '../../server/app.ts';
import { loadConfig, type ConfigInput } from '../../server/config.ts';

export interface TestServer {
  readonly sluice: Sluice;
  readonly url: string;
  readonly port: number;
  close(): Promise<void>;
}

type Settings = { [K in keyof ConfigInput]?: string | number | boolean };

const open = new Set<TestServer>();

function timerCount(): number {
  return process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;
}

/**
 * Starts a real Sluice on port 0 (simulator without delay, no resume window, silent logs unless
 * overridden). It is closed after the test, which then checks that nothing was left running.
 */
export async function startServer(settings: Settings = {}, overrides: SluiceOverrides = {}): Promise<TestServer> {
  const env: Record<string, string> = { PORT: '0', SIM_DELAY_MS: '0', RESUME_GRACE_MS: '0', LOG_LEVEL: 'silent' };
  for (const [k, v] of Object.entries(settings)) env[k] = String(v);
  // Tests keep history in memory unless they name a store (the default writes under ./data).
  const shared = ['REDIS_URL', 'REDIS_SENTINELS', 'REDIS_CLUSTER_NODES', 'DATABASE_URL'].some((name) => env[name] !== undefined);
  if (env.STORE === undefined && !shared) env.STORE = 'memory';
  const config = loadConfig(env);
  const sluice = await createSluice(config, { logger: pino({ level: config.LOG_LEVEL }), ...overrides });
  const { url, port } = await sluice.listen();
  const server: TestServer = { sluice, url, port, close: () => sluice.close() };
  open.add(server);
  return server;
}

afterEach(async () => {
  const servers = [...open];
  open.clear();
  for (const server of servers) {
    // Every test must leave its generations finished: a leak here is a bug in the server.
    await vi.waitFor(
      () => {
        expect(server.sluice.service.runningCount).toBe(0);
        expect(server.sluice.service.listenerCount).toBe(0);
      },
      { timeout: 10_000 },
    );
    await server.close();
    expect(server.sluice.http.server.listening).toBe(false);
  }
});

/**
 * Waits (up to 10 s) until the number of live timers is back to at most `baseline`. It polls by
 * hand: vi.waitFor's own timers would be counted.
 */
export async function expectTimersBackTo(baseline: number): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (timerCount() > baseline && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
  expect(timerCount()).toBeLessThanOrEqual(baseline);
}

export { timerCount };
