import WebSocket from 'ws';
import { once } from 'node:events';
import { describe, expect, it, vi } from 'vitest';
import { captureLogs } from './helpers/logs.ts';
import { startServer } from './helpers/server.ts';

/** Opens a WebSocket that the server is expected to refuse; resolves with the refusal's message. */
async function refusedUpgrade(url: string, headers: Record<string, string> = {}): Promise<string> {
  const ws = new WebSocket(url, { headers });
  const [error] = (await once(ws, 'error')) as [Error];
  return error.message;
}

describe('logs of refused WebSocket upgrades', () => {
  it('an upgrade answered 403 (a page of another site) or 404 (another path) gets its `request` line, as every HTTP request does', async () => {
    const { logger, lines } = captureLogs('info');
    const { url } = await startServer({}, { logger });
    const wsUrl = url.replace(/^http/, 'ws');
    // Cross-site WebSocket hijacking attempts are what an operator most wants to see in the log.
    expect(await refusedUpgrade(`${wsUrl}/trpc`, { origin: 'https://evil.example' })).toMatch(/403/);
    expect(await refusedUpgrade(`${wsUrl}/not-trpc`)).toMatch(/404/);
    // A request after them: its line is written once the earlier ones would have been.
    await (await fetch(`${url}/health`)).text();
    await vi.waitFor(() => expect(lines.some((l) => l['msg'] === 'request' && l['path'] === '/health')).toBe(true));

    const requests = lines.filter((l) => l['msg'] === 'request');
    expect(requests).toContainEqual(expect.objectContaining({ method: 'GET', path: '/trpc', status: 403, clientIp: expect.any(String) }));
    expect(requests).toContainEqual(expect.objectContaining({ method: 'GET', path: '/not-trpc', status: 404, clientIp: expect.any(String) }));
  });
});
