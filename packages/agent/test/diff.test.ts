import fs from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { makeTestHost, type TestHost } from '@pacha/test-support/host';

let hosts: TestHost[] = [];
afterEach(() => {
  for (const h of hosts) h.cleanup();
  hosts = [];
});

describe('pacha diff', () => {
  it('shows every kind of difference, changes nothing, exits 0', async () => {
    const h = makeTestHost({ config: { 'pacha.watch': '/srv/app' } });
    hosts.push(h);
    fs.mkdirSync(h.p('/srv/app/d'), { recursive: true });
    fs.writeFileSync(h.p('/srv/app/gone'), 'x');
    fs.writeFileSync(h.p('/srv/app/content'), 'v1');
    fs.writeFileSync(h.p('/srv/app/mode'), 'm');
    fs.writeFileSync(h.p('/srv/app/owner'), 'o');
    fs.symlinkSync('one', h.p('/srv/app/link'));
    fs.writeFileSync(h.p('/srv/app/d/typed'), 'file first');
    const first = await h.pacha(['diff']);
    expect(first.code).toBe(0);
    expect(first.stdout).toContain('added    /srv/app/gone');
    expect((await h.pacha(['snapshot'])).code).toBe(0);
    expect((await h.pacha(['diff'])).stdout).toBe('no differences\n');

    fs.rmSync(h.p('/srv/app/gone'));
    fs.writeFileSync(h.p('/srv/app/content'), 'v2 longer');
    fs.chmodSync(h.p('/srv/app/mode'), 0o600);
    fs.chownSync(h.p('/srv/app/owner'), 1234, 5678);
    fs.rmSync(h.p('/srv/app/link'));
    fs.symlinkSync('two', h.p('/srv/app/link'));
    fs.rmSync(h.p('/srv/app/d/typed'));
    fs.mkdirSync(h.p('/srv/app/d/typed'));
    fs.writeFileSync(h.p('/srv/app/new file'), 'n');
    const statCache = fs.readFileSync(h.p('/var/lib/pacha/statcache'));
    const ref = fs.readFileSync(h.p('/var/lib/pacha/repo/refs/heads/main'), 'utf8');
    const packs = fs.readdirSync(h.p('/var/lib/pacha/repo/objects/pack'));

    const r = await h.pacha(['diff']);
    expect(r.code).toBe(0);
    const out = r.stdout;
    expect(out).toContain('deleted  /srv/app/gone\n');
    expect(out).toMatch(/changed  \/srv\/app\/content \(content, mtime\)/);
    expect(out).toMatch(/changed  \/srv\/app\/mode \(mode 0644 -> 0600/);
    expect(out).toMatch(/changed  \/srv\/app\/owner \(owner \?:0 -> \?:1234, group \?:0 -> \?:5678/);
    expect(out).toMatch(/changed  \/srv\/app\/link \(target one -> two/);
    expect(out).toMatch(/changed  \/srv\/app\/d\/typed \(type file -> dir/);
    expect(out).toContain('added    /srv/app/new file\n');

    const j = JSON.parse((await h.pacha(['diff', '--json'])).stdout);
    expect(j.changes.find((c: { path: string }) => c.path === '/srv/app/gone')).toEqual({ path: '/srv/app/gone', kind: 'deleted', details: [] });
    expect(j.changes.find((c: { path: string }) => c.path === '/srv/app/mode').kind).toBe('metadata');

    // nothing was written: not the stat cache, not the repository
    expect(fs.readFileSync(h.p('/var/lib/pacha/statcache')).equals(statCache)).toBe(true);
    expect(fs.readFileSync(h.p('/var/lib/pacha/repo/refs/heads/main'), 'utf8')).toBe(ref);
    expect(fs.readdirSync(h.p('/var/lib/pacha/repo/objects/pack'))).toEqual(packs);

    // the next snapshot records the deletion
    const s = JSON.parse((await h.pacha(['snapshot', '--json'])).stdout);
    expect(s.summary.deleted).toBe(1);
    expect((await h.pacha(['diff'])).stdout).toBe('no differences\n');
  });
});
