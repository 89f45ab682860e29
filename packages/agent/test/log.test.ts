import fs from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { makeTestHost, type TestHost } from '../../../test-support/host.ts';

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
    const other = await h.pacha(['log', 'otherhost']);
    expect(other.code).toBe(1);
    expect(other.stderr).toMatch(/needs the master/);
  });
});
