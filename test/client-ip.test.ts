import { Writable } from 'node:stream';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../server/config.ts';
import { clientIp, parseTrustedProxies } from '../server/net/client-ip.ts';
import { startServer } from './helpers/server.ts';

describe('client IP behind trusted proxies (TRUSTED_PROXIES)', () => {
  it('parses IPs, CIDRs (v4 and v6) and `loopback`; IPv4-mapped peers match IPv4 entries', () => {
    const t = parseTrustedProxies(' 10.0.0.0/8, 192.168.1.5 ,fd00::/8, loopback');
    for (const ip of ['10.1.2.3', '192.168.1.5', 'fd00::1', '127.0.0.1', '127.9.9.9', '::1', '::ffff:10.0.0.7', '::ffff:127.0.0.1']) {
      expect(t.has(ip), ip).toBe(true);
    }
    for (const ip of ['11.0.0.1', '192.168.1.6', 'fe80::1', '::2', 'not-an-ip', '']) expect(t.has(ip), ip).toBe(false);
    expect(t.none).toBe(false);
    expect(parseTrustedProxies(undefined).none).toBe(true);
    expect(parseTrustedProxies(' , ').none).toBe(true);
    expect(parseTrustedProxies(undefined).has('127.0.0.1')).toBe(false);
  });

  it('refuses bad entries, and the configuration names them', () => {
    expect(() => parseTrustedProxies('10.0.0.0/33')).toThrow(/prefix length/);
    expect(() => parseTrustedProxies('10.0.0.0/x')).toThrow(/prefix length/);
    expect(() => parseTrustedProxies('nginx.internal')).toThrow(/"nginx.internal" is not an IP/);
    expect(() => loadConfig({ TRUSTED_PROXIES: '10.0.0.1,bogus' })).toThrow(/TRUSTED_PROXIES: "bogus" is not an IP address/);
    expect(loadConfig({ TRUSTED_PROXIES: '10.0.0.1, ::1/128' }).TRUSTED_PROXIES).toBe('10.0.0.1, ::1/128');
    expect(loadConfig({}).TRUSTED_PROXIES).toBeUndefined();
  });

  it('believes X-Forwarded-For only from a trusted peer, read from the right', () => {
    const none = parseTrustedProxies(undefined);
    const lb = parseTrustedProxies('127.0.0.1');
    const chain = parseTrustedProxies('127.0.0.1, 10.0.0.0/8');
    // Nothing trusted (the default): the header is ignored.
    expect(clientIp('127.0.0.1', '203.0.113.9', none)).toBe('127.0.0.1');
    // An untrusted peer cannot name another client.
    expect(clientIp('198.51.100.1', '203.0.113.9', lb)).toBe('198.51.100.1');
    // A trusted peer: the entry it appended is the client.
    expect(clientIp('127.0.0.1', '203.0.113.9', lb)).toBe('203.0.113.9');
    expect(clientIp('::ffff:127.0.0.1', '203.0.113.9', lb)).toBe('203.0.113.9');
    // A client's own (spoofed) entries sit to the left of what the proxy appended: never reached.
    expect(clientIp('127.0.0.1', '1.1.1.1, 203.0.113.9', lb)).toBe('203.0.113.9');
    // Several trusted hops are skipped; several headers count as one list.
    expect(clientIp('127.0.0.1', '1.1.1.1, 203.0.113.9, 10.0.0.2', chain)).toBe('203.0.113.9');
    expect(clientIp('127.0.0.1', ['1.1.1.1, 203.0.113.9', '10.0.0.2'], chain)).toBe('203.0.113.9');
    // Ports and brackets, as some proxies write them.
    expect(clientIp('127.0.0.1', '203.0.113.9:5555', lb)).toBe('203.0.113.9');
    expect(clientIp('127.0.0.1', '[2001:db8::1]:443', lb)).toBe('2001:db8::1');
    expect(clientIp('127.0.0.1', '2001:db8::1', lb)).toBe('2001:db8::1');
    // Only proxies all the way: the leftmost one.
    expect(clientIp('127.0.0.1', '10.0.0.3, 10.0.0.2', chain)).toBe('10.0.0.3');
    // Garbage stops the walk at the trusted hop that passed it on.
    expect(clientIp('127.0.0.1', 'unknown', lb)).toBe('127.0.0.1');
    expect(clientIp('127.0.0.1', '1.1.1.1, garbage, 10.0.0.2', chain)).toBe('10.0.0.2');
    // No header, or an empty one: the peer.
    expect(clientIp('127.0.0.1', undefined, lb)).toBe('127.0.0.1');
    expect(clientIp('127.0.0.1', '', lb)).toBe('127.0.0.1');
    expect(clientIp(undefined, '203.0.113.9', lb)).toBeUndefined();
  });

  it('the request log line carries clientIp, from the header only when the peer is trusted', async () => {
    const lines: Array<Record<string, unknown>> = [];
    const sink = new Writable({
      write(chunk, _enc, done) {
        lines.push(JSON.parse(String(chunk)));
        done();
      },
    });
    const trusting = await startServer({ TRUSTED_PROXIES: 'loopback' }, { logger: pino({ level: 'info' }, sink) });
    const other = await startServer({}, { logger: pino({ level: 'info' }, sink) });
    for (const { url } of [trusting, other]) {
      await fetch(`${url}/health`, { headers: { 'x-forwarded-for': '1.1.1.1, 203.0.113.9' } });
    }
    const requests = lines.filter((l) => l['msg'] === 'request' && l['path'] === '/health');
    expect(requests.map((r) => r['clientIp'])).toEqual(['203.0.113.9', expect.stringMatching(/^(::ffff:)?127\.0\.0\.1$/)]);
  });
});
