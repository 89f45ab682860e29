import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { makeTestHost, type TestHost } from '@pacha/test-support/host';

let hosts: TestHost[] = [];
afterEach(() => {
  for (const h of hosts) h.cleanup();
  hosts = [];
});

describe('pacha log', () => {
  it('lists snapshots newest first with time, commit and summary', async () => {
    const h = makeTestHost({ config: { 'pacha.watch': '/srv' } });
    hosts.push(h);
    expect((await h.pacha(['log'])).stdout).toBe('no snapshots yet\n');
    fs.mkdirSync(h.p('/srv'), { recursive: true });
    fs.writeFileSync(h.p('/srv/a'), 'a');
    const c1 = JSON.parse((await h.pacha(['snapshot', '--json'])).stdout).commit;
    fs.rmSync(h.p('/srv/a'));
    const c2 = JSON.parse((await h.pacha(['snapshot', '--json'])).stdout).commit;
    const r = await h.pacha(['log']);
    expect(r.code).toBe(0);
    const lines = r.stdout.trim().split('\n');
    expect(lines).toHaveLength(2);
    expect(lines[0]).toMatch(new RegExp(`^\\d{4}-\\d\\d-\\d\\dT\\S+Z  ${c2.slice(0, 12)}  0 added, 0 changed, 1 deleted, 1 metadata-only$`));
    expect(lines[1]).toContain(`${c1.slice(0, 12)}  2 added, 0 changed, 0 deleted, 0 metadata-only`);
    const j = JSON.parse((await h.pacha(['log', '-n', '1', '--json'])).stdout);
    expect(j).toHaveLength(1);
    expect(j[0]).toMatchObject({ commit: c2, summary: { deleted: 1 } });
    expect((await h.pacha(['log', '-n', '0'])).code).toBe(2);
    expect((await h.pacha(['log', 'testhost'])).code).toBe(0);
    // Another host's history needs the master, and none is configured here.
    const other = await h.pacha(['log', 'otherhost']);
    expect(other.code).toBe(2);
    expect(other.stderr).toMatch(/pacha.host is not set/);
  });

  it("reads another host's history from the master", async () => {
    const master = fs.mkdtempSync(path.join(os.tmpdir(), 'pacha-log-master-'));
    const cfg = { 'pacha.host': 'file://', 'pacha.hosts.path': master };
    const web = makeTestHost({ name: 'web1', config: { ...cfg, 'pacha.watch': '/srv' } });
    const admin = makeTestHost({ name: 'admin', config: cfg });
    hosts.push(web, admin);
    fs.mkdirSync(web.p('/srv'), { recursive: true });
    fs.writeFileSync(web.p('/srv/a'), 'a');
    const c1 = JSON.parse((await web.pacha(['snapshot', '--json'])).stdout).commit;
    expect((await web.pacha(['push'])).code).toBe(0);
    const r = await admin.pacha(['log', 'web1', '--json']);
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout).map((s: { commit: string }) => s.commit)).toEqual([c1]);
    // No staging copy is left behind.
    const tmp = admin.p('/tmp');
    expect(fs.existsSync(tmp) ? fs.readdirSync(tmp).filter((n) => n.startsWith('pacha-')) : []).toEqual([]);
    const missing = await admin.pacha(['log', 'nosuchhost']);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/host "nosuchhost" has no repository on the master/);
    fs.rmSync(master, { recursive: true, force: true });
  });
});
