import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../server/config.ts';

describe('configuration', () => {
  it('has the documented defaults', () => {
    const c = loadConfig({});
    expect(c).toMatchObject({ PORT: 8000, HOST: '127.0.0.1', SIM_DELAY_MS: 50, LLM_PROVIDER: 'simulated', LOG_LEVEL: 'info' });
    expect(c.RESUME_GRACE_MS).toBeGreaterThan(0);
  });

  it('reads flags that mirror the variables, flags first', () => {
    const c = loadConfig({ PORT: '1' }, ['--port', '9000', '--sim-delay-ms=0', '--ws-enabled', 'false']);
    expect(c).toMatchObject({ PORT: 9000, SIM_DELAY_MS: 0, WS_ENABLED: false });
  });

  it('stops with a message naming each bad setting', () => {
    expect(() => loadConfig({ PORT: 'eighty' })).toThrow(ConfigError);
    expect(() => loadConfig({ PORT: 'eighty' })).toThrow(/PORT/);
    expect(() => loadConfig({ SIM_DELAY_MS: '-5', LOG_LEVEL: 'loud' })).toThrow(/SIM_DELAY_MS.*LOG_LEVEL/);
    expect(() => loadConfig({ LLM_PROVIDER: 'openai' })).toThrow(/OPENAI_BASE_URL: is required/);
    expect(() => loadConfig({}, ['--prot', '1'])).toThrow(/unknown flag --prot/);
    expect(() => loadConfig({ WS_MAX_BATCH: '8' })).toThrow(/WS_MAX_BATCH: must be at least WS_MAX_SUBSCRIPTIONS \(16\)/);
    expect(loadConfig({ WS_MAX_BATCH: '8', WS_MAX_SUBSCRIPTIONS: '8' }).WS_MAX_BATCH).toBe(8);
  });

  it('refuses a setting that would mean something other than it says: no key in API_KEYS, a timer past what Node can wait, a key no header can carry', () => {
    // Set, API_KEYS turns authentication on: a list with no key in it would leave every route open.
    expect(() => loadConfig({ API_KEYS: ',' })).toThrow(/API_KEYS: holds no key/);
    expect(() => loadConfig({ API_KEYS: ' , ' })).toThrow(/API_KEYS: holds no key/);
    expect(loadConfig({ API_KEYS: 'k1, ,k2' }).API_KEYS).toBe('k1, ,k2');
    // Node runs a timer longer than 2^31-1 ms after 1 ms.
    for (const name of ['WS_PING_MS', 'WS_PONG_WAIT_MS', 'SEND_TIMEOUT_MS']) {
      expect(() => loadConfig({ [name]: '99999999999' })).toThrow(new RegExp(`${name}: `));
    }
    const upstream = { LLM_PROVIDER: 'openai', OPENAI_BASE_URL: 'http://127.0.0.1:1/v1', LLM_MODEL: 'm' };
    expect(() => loadConfig({ ...upstream, OPENAI_API_KEY: 'sk-abc\n' })).toThrow(/OPENAI_API_KEY: .*line break or control character/);
    expect(loadConfig({ ...upstream, OPENAI_API_KEY: 'sk-abc' }).OPENAI_API_KEY).toBe('sk-abc');
  });

  it('takes a blank setting (spaces only) as unset, as it takes an empty one, never as 0', () => {
    expect(loadConfig({ LLM_TEMPERATURE: ' ' }).LLM_TEMPERATURE).toBeUndefined();
    expect(loadConfig({ UPSTREAM_FIRST_TOKEN_TIMEOUT_MS: '  ' }).UPSTREAM_FIRST_TOKEN_TIMEOUT_MS).toBe(60_000);
    expect(loadConfig({ SIM_DELAY_MS: '\t' }).SIM_DELAY_MS).toBe(50);
    expect(() => loadConfig({ LLM_PROVIDER: 'openai', OPENAI_BASE_URL: 'http://127.0.0.1:1/v1', LLM_MODEL: ' ' })).toThrow(/LLM_MODEL/);
  });

  it('reaches Redis one way: a URL, Sentinels with their master, or Cluster nodes; TLS with a CA only over rediss://', () => {
    expect(loadConfig({ REDIS_SENTINELS: '10.0.0.1:26379, [::1]:26380', REDIS_SENTINEL_MASTER: 'main' })).toMatchObject({ STORE: 'redis' });
    expect(loadConfig({ REDIS_CLUSTER_NODES: 'redis-1:7000,redis-2:7000' })).toMatchObject({ STORE: 'redis' });
    expect(() => loadConfig({ REDIS_URL: 'redis://h:6379', REDIS_CLUSTER_NODES: 'h:7000' })).toThrow(
      /REDIS_CLUSTER_NODES: set one of REDIS_URL, REDIS_CLUSTER_NODES/,
    );
    expect(() => loadConfig({ REDIS_SENTINELS: 'h:26379' })).toThrow(/REDIS_SENTINEL_MASTER: is required with REDIS_SENTINELS/);
    expect(() => loadConfig({ REDIS_SENTINEL_MASTER: 'main' })).toThrow(/REDIS_SENTINELS: is required with REDIS_SENTINEL_MASTER/);
    expect(() => loadConfig({ REDIS_CLUSTER_NODES: 'h:7000,nope' })).toThrow(/REDIS_CLUSTER_NODES: "nope" is not host:port/);
    expect(() => loadConfig({ REDIS_CLUSTER_NODES: 'h:70000' })).toThrow(/"h:70000" is not host:port/);
    expect(() => loadConfig({ REDIS_URL: 'redis://h:6379', REDIS_TLS_CA_FILE: '/ca.pem' })).toThrow(
      /REDIS_URL: must be rediss:\/\/ \(TLS\) when REDIS_TLS_CA_FILE is set/,
    );
    expect(() => loadConfig({ REDIS_CLUSTER_NODES: 'h:7000', REDIS_WAIT_REPLICAS: '1' })).toThrow(
      /REDIS_WAIT_REPLICAS: is not supported with REDIS_CLUSTER_NODES/,
    );
    expect(() => loadConfig({ STORE: 'redis' })).toThrow(/REDIS_URL: is required when STORE=redis/);
  });

  it('end-user tokens: one source of keys; issuer and audience need one', () => {
    expect(loadConfig({ AUTH_JWT_SECRET: 'x'.repeat(32) }).AUTH_JWT_OWNER_CLAIM).toBe('sub');
    expect(() => loadConfig({ AUTH_JWKS_URL: 'https://id.example.com/jwks', AUTH_JWT_SECRET: 'x'.repeat(32) })).toThrow(
      /AUTH_JWT_SECRET: set only one of AUTH_JWKS_URL, AUTH_JWT_SECRET/,
    );
    expect(() => loadConfig({ AUTH_JWT_ISSUER: 'https://id.example.com/' })).toThrow(/AUTH_JWT_ISSUER: needs AUTH_JWKS_URL/);
    expect(() => loadConfig({ AUTH_JWKS_URL: 'not a url' })).toThrow(/AUTH_JWKS_URL/);
    expect(() => loadConfig({ AUTH_JWT_SECRET: 'x'.repeat(32), AUTH_JWT_OWNER_CLAIM: 'two words' })).toThrow(/AUTH_JWT_OWNER_CLAIM: must be a claim name/);
  });
});
