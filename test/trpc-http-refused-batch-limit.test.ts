import { describe, expect, it } from 'vitest';
import { startServer } from './helpers/server.ts';

// A tRPC call refused before tRPC reads it (a page from an origin not in ALLOWED_ORIGINS, a Host
// not in ALLOWED_HOSTS) is answered in tRPC's words by TrpcHttpRoutes.refuse: one error per
// procedure named in the URL. tRPC itself never looks past WS_MAX_BATCH (its `maxBatchSize`):
// getRequestInfo (unstable-core-do-not-import/http/contentType.ts, `paths.length > maxBatchSize`)
// refuses such a batch whole, with one 400 "Batch call exceeds maximum size", before any call is
// answered or reported. The refusal path has no such bound: a 14 KB URL naming 7,000 procedures
// is answered with 7,000 errors (over a megabyte) and counted as 7,000 rejected requests.

const CALLS = 7000;
const MAX_BATCH = 16;

async function rejectedForbidden(url: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith('sluice_rejected_requests_total{') && l.includes('reason="forbidden"'));
  return line ? Number(line.split(' ').at(-1)) : 0;
}

describe('tRPC over HTTP: a batch refused before tRPC reads it', () => {
  it('is bounded by WS_MAX_BATCH as tRPC bounds a batch: no more answers (and rejections) than a batch at the limit', async () => {
    const { url } = await startServer({ WS_MAX_BATCH: MAX_BATCH });
    const origin = { origin: 'http://evil.example' };
    const batch = (n: number) => `${url}/trpc/${Array.from({ length: n }, () => 'a').join(',')}?batch=1`;

    const atLimit = await fetch(batch(MAX_BATCH), { headers: origin });
    expect(atLimit.status).toBe(403);
    const atLimitBytes = (await atLimit.text()).length;

    const before = await rejectedForbidden(url);
    const over = await fetch(batch(CALLS), { headers: origin });
    const body = await over.text();
    const counted = (await rejectedForbidden(url)) - before;
    const entries = body.startsWith('[') ? (JSON.parse(body) as unknown[]).length : 1;

    expect({ status: over.status, entries, bytes: body.length, counted }).toEqual({
      status: expect.toSatisfy((s: number) => s === 400 || s === 403),
      entries: expect.toSatisfy((n: number) => n <= MAX_BATCH),
      bytes: expect.toSatisfy((b: number) => b <= atLimitBytes),
      counted: expect.toSatisfy((c: number) => c <= MAX_BATCH),
    });
  });
});
