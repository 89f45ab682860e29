import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { commitSnapshot, initBareRepo, masterHostDir, type FixtureFile } from '@pacha/test-support/git-fixture';
import { makeTestHost, type TestHost } from '@pacha/test-support/host';
import { listTree } from './rebuild-helpers.ts';

// A host whose repository was written in format 1 (by test-support's kept format 1 writer,
// native git plumbing) upgrades pacha: the old history is read (log, diff, rebuild, --at),
// the next snapshot is format 2 on top of it without rewriting the old commits, and the
// mixed history is rebuilt at either side of the boundary. Native git checks every step.

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});

function fsck(repo: string): void {
  execFileSync('git', ['--git-dir', repo, 'fsck', '--full', '--strict', '--no-dangling'], { stdio: 'pipe' });
}

function git(repo: string, args: string[]): string {
  return execFileSync('git', ['--git-dir', repo, ...args], { encoding: 'utf8' });
}

/** The host's files under `top` as format 1 fixture entries, metadata as lstat sees it. */
function entriesOf(h: TestHost, top: string): FixtureFile[] {
  const out: FixtureFile[] = [];
  const names = { users: new Map([[0, 'root']]), groups: new Map([[0, 'root']]) };
  const walk = (hp: string) => {
    const st = fs.lstatSync(h.p(hp), { bigint: true });
    const owner = { uid: Number(st.uid), user: names.users.get(Number(st.uid)) ?? '', gid: Number(st.gid), group: names.groups.get(Number(st.gid)) ?? '' };
    const base = { path: hp, mode: Number(st.mode & 0o7777n), mtimeNs: st.mtimeNs, ...owner };
    if (st.isDirectory()) {
      out.push({ ...base, type: 'dir' });
      for (const n of fs.readdirSync(h.p(hp))) walk(`${hp}/${n}`);
    } else if (st.isSymbolicLink()) out.push({ ...base, type: 'symlink', target: fs.readlinkSync(h.p(hp)) });
    else out.push({ ...base, type: 'file', content: fs.readFileSync(h.p(hp)) });
  };
  walk(top);
  return out;
}

describe('format 1 -> format 2', () => {
  it('reads, continues and rebuilds a repository written in format 1', async () => {
    const base = fs.mkdtempSync(path.join(os.tmpdir(), 'pacha-f1f2-'));
    dirs.push(base);
    const hostsPath = path.join(base, 'master-hosts');
    const h = makeTestHost({ name: 'web1', tmpDir: base, config: { 'pacha.watch': '/srv/app,/etc/motd', 'pacha.host': 'file://', 'pacha.hosts.path': hostsPath } });
    fs.writeFileSync(h.p('/etc/passwd'), 'root:x:0:0:root:/root:/bin/sh\n');
    fs.writeFileSync(h.p('/etc/group'), 'root:x:0:\n');
    fs.mkdirSync(h.p('/srv/app/conf.d'), { recursive: true });
    fs.mkdirSync(h.p('/srv/app/empty'));
    // A host directory called .pacha: an ordinary name in format 1's trees below the top, an
    // encoded one in format 2's, where every directory's .pacha is its metadata.
    fs.mkdirSync(h.p('/srv/app/.pacha'));
    fs.writeFileSync(h.p('/srv/app/.pacha/notes'), 'not metadata\n');
    fs.writeFileSync(h.p('/srv/app/conf.d/a.conf'), 'a = 1\n');
    fs.writeFileSync(h.p('/srv/app/run.sh'), '#!/bin/sh\n', { mode: 0o4755 });
    fs.chmodSync(h.p('/srv/app/run.sh'), 0o4755);
    fs.symlinkSync('conf.d/a.conf', h.p('/srv/app/link'));
    fs.writeFileSync(h.p('/etc/motd'), 'hello\n');
    const times = { past: 1_700_000_000 };
    for (const p of ['/srv/app/conf.d/a.conf', '/srv/app/run.sh', '/etc/motd', '/srv/app/.pacha/notes']) fs.utimesSync(h.p(p), times.past, times.past);

    // 1. The repository as the format 1 code left it.
    const repo = h.p('/var/lib/pacha/repo');
    initBareRepo(repo);
    const entries = [...entriesOf(h, '/srv/app'), ...entriesOf(h, '/etc/motd')];
    const v1 = commitSnapshot(repo, { roots: ['/etc/motd', '/srv/app'], entries, time: times.past, message: '8 added, 0 changed, 0 deleted, 0 metadata-only\n\nPacha-Host: web1' });
    expect(git(repo, ['show', `${v1}:.pacha/format`])).toBe('pacha-snapshot 1\n');
    expect(git(repo, ['show', `${v1}:srv/app/.pacha/notes`])).toBe('not metadata\n');
    fsck(repo);

    // read: log and diff against a format 1 snapshot
    let r = await h.pacha(['log']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain(`${v1.slice(0, 12)}  8 added, 0 changed, 0 deleted, 0 metadata-only`);
    r = await h.pacha(['diff', '--json']);
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout).changes).toEqual([]);

    // 2. continued: the next snapshot is format 2, on top of the old commit, nothing changed
    r = await h.pacha(['snapshot', '--json']);
    expect(r.code, r.stderr).toBe(0);
    const migrated = JSON.parse(r.stdout) as { commit: string; parent: string; summary: Record<string, number> };
    expect(migrated.parent).toBe(v1);
    expect(migrated.summary).toMatchObject({ added: 0, changed: 0, deleted: 0, metadataOnly: 0 });
    expect(git(repo, ['show', 'HEAD:.pacha/format'])).toBe('pacha-snapshot 2\n');
    expect(git(repo, ['log', '-1', '--format=%B'])).toContain('snapshot format 1 -> 2');
    expect(git(repo, ['rev-parse', 'HEAD~1'])).toBe(`${v1}\n`);
    expect(git(repo, ['show', `${v1}:.pacha/format`])).toBe('pacha-snapshot 1\n');
    // the host's own .pacha is stored under an encoded name; the metadata names it as it is
    expect(git(repo, ['show', 'HEAD:srv/app/.pacha-name-2e7061636861/notes'])).toBe('not metadata\n');
    expect(git(repo, ['show', 'HEAD:srv/app/.pacha'])).toMatch(/^\.\tdir\t/);
    expect(git(repo, ['show', 'HEAD:srv/app/.pacha-name-2e7061636861/.pacha'])).toMatch(/^\.\tdir\t.*\nnotes\tfile\t0644\t/);
    // a watched file's record is in its container's .pacha
    expect(git(repo, ['show', 'HEAD:etc/.pacha'])).toMatch(/^motd\tfile\t0644\troot:0\troot:0\t1700000000\.000000000\t6\t\t\n$/);
    fsck(repo);
    r = await h.pacha(['snapshot']);
    expect(r.stdout.trim()).toBe('no changes');

    // 3. a change after the boundary; pacha log spans both formats
    fs.writeFileSync(h.p('/srv/app/conf.d/a.conf'), 'a = 2\n');
    r = await h.pacha(['snapshot', '--json']);
    expect(JSON.parse(r.stdout).summary).toMatchObject({ changed: 1, metadataOnly: 0 });
    const v2 = git(repo, ['rev-parse', 'HEAD']).trim();
    fsck(repo);
    r = await h.pacha(['log', '--json']);
    const log = JSON.parse(r.stdout) as { commit: string; summary: Record<string, number> | null }[];
    expect(log.map((c) => c.commit)).toEqual([v2, migrated.commit, v1]);
    expect(log[0].summary).toEqual({ added: 0, changed: 1, deleted: 0, metadataOnly: 0 });

    // 4. rebuilt on a fresh host at either side of the boundary
    const master = masterHostDir(hostsPath, 'web1');
    fs.cpSync(repo, master.repo, { recursive: true });
    fsck(master.repo);
    const expected = listTree(h.p('/srv/app'));
    for (const [at, aConf] of [[v1, 'a = 1\n'], [new Date((times.past + 10) * 1000).toISOString(), 'a = 1\n'], [v2, 'a = 2\n']] as const) {
      const fresh = makeTestHost({ name: 'web1', tmpDir: base, config: { 'pacha.host': 'file://', 'pacha.hosts.path': hostsPath } });
      fs.writeFileSync(fresh.p('/etc/passwd'), 'root:x:0:0:root:/root:/bin/sh\n');
      fs.writeFileSync(fresh.p('/etc/group'), 'root:x:0:\n');
      r = await fresh.pacha(['rebuild', 'web1', '--yes', '--verify', '--at', at]);
      expect(r.code, r.stderr).toBe(0);
      expect(fs.readFileSync(fresh.p('/srv/app/conf.d/a.conf'), 'utf8')).toBe(aConf);
      const got = listTree(fresh.p('/srv/app'));
      const want = new Map(expected);
      want.delete('conf.d/a.conf');
      got.delete('conf.d/a.conf');
      expect(got).toEqual(want);
      expect(fs.lstatSync(fresh.p('/srv/app/run.sh')).mode & 0o7777).toBe(0o4755);
      expect(fs.readFileSync(fresh.p('/etc/motd'), 'utf8')).toBe('hello\n');
    }
  });
});
