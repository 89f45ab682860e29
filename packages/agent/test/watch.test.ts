import fs from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { makeTestHost, type TestHost } from '@pacha/test-support/host';

let host: TestHost;
afterEach(() => host?.cleanup());

describe('pacha watch / unwatch / watched / check-config', () => {
  it('stores absolute normalised paths, folds nested ones and merges pacha.watch', async () => {
    host = makeTestHost({ config: { 'pacha.watch': '/srv/www' } });
    for (const d of ['/etc/nginx/sites', '/opt/app', '/srv/www']) fs.mkdirSync(host.p(d), { recursive: true });
    fs.writeFileSync(host.p('/etc/hosts'), '127.0.0.1 localhost\n');

    let r = await host.pacha(['watch', '/etc/nginx/sites/', '/etc/hosts', '/opt/./app']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain('watching /etc/nginx/sites');
    r = await host.pacha(['watch', '/etc/nginx']);
    expect(r.stdout).toMatch(/\/etc\/nginx\/sites is now covered/);
    r = await host.pacha(['watch', '/etc/nginx/sites', '/srv/www/x/..']);
    expect(r.stdout).toContain('already watched: /etc/nginx/sites (inside /etc/nginx)');
    expect(r.stdout).toContain('already watched: /srv/www');

    r = await host.pacha(['watched', '--json']);
    expect(JSON.parse(r.stdout)).toEqual([
      { path: '/etc/hosts', source: 'watch list' },
      { path: '/etc/nginx', source: 'watch list' },
      { path: '/opt/app', source: 'watch list' },
      { path: '/srv/www', source: 'pacha.watch' },
    ]);

    r = await host.pacha(['unwatch', '/opt/app', '/srv/www']);
    expect(r.stdout).toContain('no longer watching /opt/app');
    expect(r.stdout).toMatch(/\/srv\/www is watched by pacha.watch/);
    r = await host.pacha(['watched']);
    expect(r.stdout.trim().split('\n')).toEqual(['/etc/hosts', '/etc/nginx', '/srv/www  (pacha.watch)']);
  });

  it('refuses a missing path with a clear error and exit 2, changing nothing', async () => {
    host = makeTestHost();
    fs.mkdirSync(host.p('/etc'), { recursive: true });
    const r = await host.pacha(['watch', '/etc', '/nope/x']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/cannot watch \/nope\/x: no such file or directory/);
    expect((await host.pacha(['watched'])).stdout).toMatch(/nothing is watched/);
  });

  it('check-config prints the effective configuration and its problems', async () => {
    host = makeTestHost({ config: { 'pacha.frequency': 12, 'pacha.colour': 'blue' } });
    const r = await host.pacha(['check-config']);
    expect(r.code).toBe(0); // only warnings (check-config.test.ts has the rest)
    expect(r.stdout).toMatch(/pacha.frequency\s+= 12/);
    expect(r.stdout).toMatch(/pacha.hostname\s+= testhost/);
    expect(r.stdout).toMatch(/unknown key pacha.colour/);
    expect(r.stdout).toMatch(/pacha.host is not set/);
    const j = await host.pacha(['check-config', '--json']);
    expect(JSON.parse(j.stdout).effective['pacha.ssh.user']).toBe('root');
  });

  it('exits 2 on a usage error and on a bad config value', async () => {
    host = makeTestHost({ config: { 'pacha.ssh.port': 'twenty-two' } });
    let r = await host.pacha(['watched']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/pacha.conf:3: pacha.ssh.port: "twenty-two" is not a port/);
    r = await host.pacha(['frobnicate']);
    expect(r.code).toBe(2);
  });
});
