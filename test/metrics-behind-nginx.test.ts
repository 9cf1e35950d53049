import { describe, expect, it } from 'vitest';
import { startNginx } from './helpers/nginx.ts';
import { startSluiceProcess } from './helpers/process.ts';

describe('/metrics behind the documented nginx (docs/deploy/nginx.conf, real nginx)', () => {
  it('is refused through nginx under every spelling Sluice serves it under, not only the exact `/metrics`', async () => {
    const sluice = await startSluiceProcess({ TRUSTED_PROXIES: '127.0.0.1' });
    const nginx = await startNginx('nginx.conf', [sluice.url]);
    if (!nginx) return;
    // Sluice itself answers each of these spellings with its metrics (it drops trailing and repeated
    // slashes and resolves dot segments before routing).
    const spellings = ['/metrics', '/metrics/', '/metrics//', '/metrics/.', '/x/../metrics/'];
    for (const path of spellings) {
      const direct = await fetch(`${sluice.url}${path}`);
      expect({ path, status: direct.status }).toEqual({ path, status: 200 });
      expect(await direct.text()).toContain('sluice_open_connections');
    }
    // Through nginx, the public's way in, none of them may be served ("keep it off the public internet").
    const leaked: string[] = [];
    for (const path of spellings) {
      const res = await fetch(`${nginx.url}${path}`);
      const body = await res.text();
      if (res.status === 200 && body.includes('sluice_open_connections')) leaked.push(path);
    }
    expect(leaked).toEqual([]);
  });
});
