import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runMaster } from '@pacha/test-support/cli';
import { pushSnapshots } from '@pacha/shared/push/push';
import { silentLogger } from '@pacha/shared/log';
import { gitIn, makePushFixture, type PushFixture } from '@pacha/test-support/push';

// `pacha-master hosts | log | show` over a host tree written by real pushes.

let web: PushFixture;
let db: PushFixture;
let commits: string[];
let hostsPath: string;

beforeAll(async () => {
  web = makePushFixture('web1');
  hostsPath = web.hostsPath;
  commits = [web.snapshot(12, 0), web.snapshot(12, 1), web.snapshot(12, 2, [{ path: '/etc/app/link', type: 'symlink', target: 'd0/f0.conf' }])];
  await pushSnapshots({ config: web.config, state: web.state, log: silentLogger });
  db = makePushFixture('db1', { 'pacha.hosts.path': hostsPath });
  db.snapshot(5, 0);
  await pushSnapshots({ config: db.config, state: db.state, log: silentLogger });
  fs.mkdirSync(path.join(hostsPath, 'newhost', 'pacha_pre'), { recursive: true }); // authorized, never pushed
});
afterAll(() => {
  web?.cleanup();
  db?.cleanup();
});

const master = (args: string[]) => runMaster([...args, '--hosts-path', hostsPath]);

describe('pacha-master hosts', () => {
  it('lists every host with last snapshot time, commits and size', async () => {
    const r = await master(['hosts', '--json']);
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout);
    const byName = Object.fromEntries(out.hosts.map((h: { name: string }) => [h.name, h]));
    expect(Object.keys(byName)).toEqual(['db1', 'newhost', 'web1']);
    expect(byName.web1).toMatchObject({ head: commits[2], commits: 3 });
    const t = Number(gitIn(web.state.repo, ['log', '-1', '--format=%ct', 'main']).trim());
    expect(byName.web1.lastSnapshot).toBe(new Date(t * 1000).toISOString());
    expect(byName.web1.size).toBeGreaterThan(1000);
    expect(byName.db1.commits).toBe(1);
    expect(byName.newhost).toMatchObject({ head: null, commits: 0, lastSnapshot: null });
    const text = await master(['hosts']);
    expect(text.stdout).toMatch(/^HOST\s+LAST SNAPSHOT\s+COMMITS\s+SIZE/);
    expect(text.stdout).toMatch(/web1\s+\S+Z\s+3\s/);
    expect(text.stdout).toMatch(/newhost\s+never\s+0/);
  });
});

describe('pacha-master log', () => {
  it('prints the history newest first', async () => {
    const r = await master(['log', 'web1', '--json']);
    expect(r.code).toBe(0);
    const snaps = JSON.parse(r.stdout).snapshots;
    expect(snaps.map((s: { commit: string }) => s.commit)).toEqual([...commits].reverse());
    expect(snaps[0].message).toBe('snapshot v2');
    const text = await master(['log', 'web1', '-n', '1']);
    expect(text.stdout.trim().split('\n')).toEqual([expect.stringMatching(new RegExp(`^${commits[2].slice(0, 12)}  \\S+Z  snapshot v2$`))]);
  });

  it('names a missing host and refuses a path as host name', async () => {
    const missing = await master(['log', 'nope']);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/no host nope under/);
    const bad = await master(['log', '../web1']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/is not a host name/);
  });
});

describe('pacha-master show', () => {
  it('prints a file as of the latest snapshot, a commit prefix, or a time', async () => {
    const latest = await master(['show', 'web1', '/etc/app/d0/f0.conf']);
    expect(latest.code).toBe(0);
    expect(latest.stdout).toMatch(/^file 0 version 2\n/);
    const first = await master(['show', 'web1', '/etc/app/d0/f0.conf', '--at', commits[0].slice(0, 8)]);
    expect(first.stdout).toMatch(/^file 0 version 0\n/);
    // Snapshot times are 60 s apart: 30 s after the second one selects the second.
    const t2 = Number(gitIn(web.state.repo, ['log', '-1', '--format=%ct', commits[1]]).trim());
    const byTime = await master(['show', 'web1', '/etc/app/d0/f0.conf', '--at', new Date((t2 + 30) * 1000).toISOString()]);
    expect(byTime.stdout).toMatch(/^file 0 version 1\n/);
  });

  it('adds the metadata line with -v and shows a symlink target', async () => {
    const r = await master(['show', 'web1', '/etc/app/d1/f1.conf', '-v']);
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/# metadata: etc\/app\/d1\/f1.conf\tfile\t0644\troot:0\troot:0\t/);
    const link = await master(['show', 'web1', '/etc/app/link', '--json']);
    expect(JSON.parse(link.stdout)).toMatchObject({ type: 'symlink', content: 'd0/f0.conf', commit: commits[2] });
  });

  it('fails clearly on a missing path, a directory and a bad --at', async () => {
    const missing = await master(['show', 'web1', '/etc/app/none']);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/\/etc\/app\/none is not in web1's snapshot/);
    const dir = await master(['show', 'web1', '/etc/app']);
    expect(dir.stderr).toMatch(/is a directory/);
    const bad = await master(['show', 'web1', '/etc/app/d0/f0.conf', '--at', 'yesterday-ish']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/accepted: a commit id/);
    const early = await master(['show', 'web1', '/etc/app/d0/f0.conf', '--at', '2001-01-01T00:00:00Z']);
    // One resolveAt for rebuild, log and show: an --at older than every snapshot is a bad argument.
    expect(early.code).toBe(2);
    expect(early.stderr).toMatch(/no snapshot at or before/);
  });
});
