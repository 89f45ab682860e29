import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { loadAccounts } from '@pacha/shared/accounts';
import { silentLogger } from '@pacha/shared/log';
import { BlobSource } from '@pacha/shared/rebuild/blob-source';
import { ownerResolver } from '@pacha/shared/rebuild/owners';
import { planRestore } from '@pacha/shared/rebuild/plan';
import { readStagedSnapshot, resolveHead } from '@pacha/shared/rebuild/read';
import { restorePlan, type RestoreResult } from '@pacha/shared/rebuild/restore';
import { validateSnapshot } from '@pacha/shared/rebuild/validate';
import { makeTestHost, type TestHost } from '@pacha/test-support/host';
import { commitSnapshot, packRepo } from '@pacha/test-support/git-fixture';
import { SVC_GID, SVC_UID, listTree, makeWorld, uniqueTop, type RebuildWorld } from './rebuild-helpers.ts';

// The restore's new files and symlinks written by threads (rebuild/file-writers.ts): each thread
// works on the descriptor of a directory the main thread verified. A local user acts in the moment a batch
// goes to a thread (the restore's own hook): she swaps the directory the files go to for a
// symlink to a root directory outside the roots, or takes one of their names first. Nothing
// outside the roots may change; her name is refused, never replaced.

let world: RebuildWorld | undefined;
afterEach(() => {
  world?.cleanup();
  world = undefined;
});

const alice = { user: 'svcuser', uid: SVC_UID, group: 'svcgroup', gid: SVC_GID };

function threadsWorld() {
  const w = makeWorld();
  world = w;
  const home = `${w.top}/home/alice`;
  commitSnapshot(w.master.repo, {
    roots: [home],
    entries: [
      { path: home, type: 'dir', mode: 0o750, ...alice },
      { path: `${home}/sub`, type: 'dir', mode: 0o755, ...alice },
      ...Array.from({ length: 20 }, (_, i) => ({ path: `${home}/sub/f${i}.txt`, type: 'file' as const, content: `file ${i}\n`, mode: 0o640, mtimeNs: 1_600_000_000_000_000_000n, ...alice })),
      // Symlinks named like files of the attacked directory: created in it, they would replace nothing
      // (RENAME_NOREPLACE) but would appear there.
      ...Array.from({ length: 4 }, (_, i) => ({ path: `${home}/sub/link${i}`, type: 'symlink' as const, target: `f${i}.txt`, mtimeNs: 1_600_000_000_123_456_789n, ...alice })),
    ],
    time: 1_700_300_000,
  });
  packRepo(w.master.repo);
  const h = (p: string) => w.host.p(p);
  fs.mkdirSync(h(`${home}/sub`), { recursive: true });
  // Root's directory outside the roots, the target of the attack.
  fs.mkdirSync(h(`${w.top}/etc`), { mode: 0o755 });
  fs.writeFileSync(h(`${w.top}/etc/shadow`), 'root:$6$secret:19000::::::\n', { mode: 0o640 });
  fs.utimesSync(h(`${w.top}/etc`), 1_000_000_000, 1_000_000_000);
  const top = w.top.slice(1);
  const homeRel = home.slice(1);
  const outside = () => listTree(w.host.root, { mtimes: true, skip: (rel) => rel === 'var' || rel === 'tmp' || rel === homeRel || rel.startsWith(homeRel + '/') || rel === `${top}/home/alice` });
  return { w, home, h, outside };
}

/** The rebuild's own steps with the restore on one thread and `attack` run as a batch goes to it. */
async function restoreWithThreads(w: RebuildWorld, attack: (paths: string[]) => void): Promise<RestoreResult> {
  const staged = path.join(w.hostsPath, 'web1', 'repo');
  const blobs = new BlobSource(staged);
  try {
    const snap = readStagedSnapshot(staged, blobs.objects, resolveHead(staged, blobs.objects));
    const valid = await validateSnapshot(snap, { root: w.host.root, blobs });
    const resolver = ownerResolver(loadAccounts(w.host.root), w.host.root);
    const plan = await planRestore(valid, { root: w.host.root, resolver, deleteExtra: false });
    const keepDir = w.host.p('/var/lib/pacha/replaced/now');
    let attacked = false;
    return await restorePlan(plan, {
      root: w.host.root,
      keepDir,
      resolver,
      log: silentLogger,
      blobs,
      threads: 1,
      beforeThreadBatch: (paths) => {
        if (attacked) return;
        attacked = true;
        attack(paths);
      },
    });
  } finally {
    blobs.close();
  }
}

describe('new files written by threads, with a local user acting while they are in flight', () => {
  it('the directory swapped for a symlink: the files go into the directory that was verified, nothing through the symlink', async () => {
    const { w, home, h, outside } = threadsWorld();
    const before = outside();
    let batch: string[] = [];
    const res = await restoreWithThreads(w, (paths) => {
      batch = paths;
      execFileSync('sh', ['-c', `cd "${h(home)}" && mv sub sub.orig && ln -s ../../etc sub`]);
    });
    expect(batch).toHaveLength(24);
    expect(batch.filter((p) => p.includes('/link'))).toHaveLength(4);
    expect(outside()).toEqual(before);
    expect(fs.readdirSync(h(`${w.top}/etc`))).toEqual(['shadow']);
    // The symlinks too, with their owner and time (not followed: their targets keep theirs).
    const l = h(`${home}/sub.orig/link2`);
    expect(fs.readlinkSync(l)).toBe('f2.txt');
    const ls = fs.lstatSync(l, { bigint: true });
    expect([ls.uid, ls.gid, ls.mtimeNs]).toEqual([BigInt(SVC_UID), BigInt(SVC_GID), 1_600_000_000_123_456_789n]);
    // Written whole, with their metadata, into the very directory the plan saw (now sub.orig).
    const f = h(`${home}/sub.orig/f7.txt`);
    expect(fs.readFileSync(f, 'utf8')).toBe('file 7\n');
    const st = fs.statSync(f);
    expect([st.mode & 0o7777, st.uid, st.gid, st.mtimeMs]).toEqual([0o640, SVC_UID, SVC_GID, 1_600_000_000_000]);
    const names = [...Array.from({ length: 20 }, (_, i) => `f${i}.txt`), ...Array.from({ length: 4 }, (_, i) => `link${i}`)];
    expect(fs.readdirSync(h(`${home}/sub.orig`)).sort()).toEqual(names.sort());
    expect(fs.readlinkSync(h(`${home}/sub`))).toBe('../../etc');
    expect(res.created).toBe(24);
  });

  it('a name taken while its file is in flight is refused, never replaced, and no temporary file is left', async () => {
    const { w, home, h, outside } = threadsWorld();
    const before = outside();
    const res = await restoreWithThreads(w, () => {
      fs.writeFileSync(h(`${home}/sub/f3.txt`), 'alice was here first\n');
      fs.symlinkSync('/etc/shadow', h(`${home}/sub/link1`));
    });
    expect(outside()).toEqual(before);
    expect(res.refused.map((r) => `${r.hostPath}: ${r.reason}`).sort()).toEqual([`${home}/sub/f3.txt: appeared`, `${home}/sub/link1: appeared`]);
    expect(fs.readlinkSync(h(`${home}/sub/link1`))).toBe('/etc/shadow');
    expect(fs.readlinkSync(h(`${home}/sub/link0`))).toBe('f0.txt');
    expect(fs.readFileSync(h(`${home}/sub/f3.txt`), 'utf8')).toBe('alice was here first\n');
    expect(fs.readFileSync(h(`${home}/sub/f4.txt`), 'utf8')).toBe('file 4\n');
    expect(fs.readdirSync(h(`${home}/sub`)).filter((n) => n.includes('.pacha-'))).toEqual([]);
    expect(res.created).toBe(22);
  });
});

describe('new files written by threads below a setgid directory of the host (as /var/local on Debian)', () => {
  it('get the group the snapshot records, not the one the directory made there inherits', async () => {
    const w = makeWorld();
    world = w;
    const app = `${w.top}/srv/app`;
    const root = { user: 'root', uid: 0, group: 'root', gid: 0 };
    commitSnapshot(w.master.repo, {
      roots: [app],
      entries: [
        { path: app, type: 'dir', mode: 0o755, ...root },
        ...Array.from({ length: 8 }, (_, i) => ({ path: `${app}/f${i}.conf`, type: 'file' as const, content: `conf ${i}\n`, mode: 0o644, ...root })),
        { path: `${app}/link`, type: 'symlink' as const, target: 'f0.conf', ...root },
      ],
      time: 1_700_400_000,
    });
    packRepo(w.master.repo);
    const srv = w.host.p(`${w.top}/srv`);
    fs.mkdirSync(srv, { recursive: true });
    fs.chownSync(srv, 0, 100);
    fs.chmodSync(srv, 0o2775);
    const res = await restoreWithThreads(w, () => undefined);
    expect(res.refused).toEqual([]);
    expect(res.created).toBe(10);
    for (const name of ['f3.conf', 'link']) expect(fs.lstatSync(w.host.p(`${app}/${name}`)).gid, name).toBe(0);
    const d = fs.statSync(w.host.p(app));
    expect([d.gid, d.mode & 0o7777]).toEqual([0, 0o755]);
  });
});

describe('a thread that fails', () => {
  it("fails the restore with the failed call's error (code and syscall)", async () => {
    const { w, home, h } = threadsWorld();
    // The directory the batch writes into is removed (it is empty: all its files are in the batch).
    const err = await restoreWithThreads(w, () => fs.rmdirSync(h(`${home}/sub`))).catch((e: unknown) => e);
    expect((err as NodeJS.ErrnoException).code).toBe('ENOENT');
    expect((err as NodeJS.ErrnoException).syscall).toBe('open');
    expect(fs.readdirSync(h(home))).toEqual([]);
  });
});

describe('many new files: written by threads, with their extended attributes', () => {
  it('attributes of the record set, attributes a new file got from its directory removed; --verify agrees', async () => {
    const base = fs.mkdtempSync(path.join(os.tmpdir(), 'pacha-threads-'));
    try {
      const hosts = path.join(base, 'hosts');
      fs.mkdirSync(hosts);
      const config = { 'pacha.host': 'file://', 'pacha.hosts.path': hosts };
      const top = uniqueTop();
      const lost = makeTestHost({ name: 'many', tmpDir: base, config });
      const p = (h: TestHost, x: string) => h.p(`${top}/${x}`);
      fs.mkdirSync(p(lost, 'many'), { recursive: true });
      // Enough files for threads (FileWriters.threadsFor).
      for (let i = 0; i < 1200; i++) fs.writeFileSync(p(lost, `many/f${i}.conf`), `value = ${i}\n`, { mode: i % 2 ? 0o640 : 0o600 });
      sh('setfattr', '-n', 'user.origin', '-v', 'ops team', p(lost, 'many/f5.conf'));
      sh('setfacl', '-m', 'u:0:rw', p(lost, 'many/f6.conf'));
      // A folder the rebuild creates: a new file there is root's already, unless the snapshot says otherwise.
      fs.mkdirSync(p(lost, 'many/new'));
      fs.writeFileSync(p(lost, 'many/new/svc.conf'), 'svc\n');
      fs.chownSync(p(lost, 'many/new/svc.conf'), SVC_UID, SVC_GID);
      fs.writeFileSync(p(lost, 'many/new/root.conf'), 'root\n');
      fs.symlinkSync('svc.conf', p(lost, 'many/new/svc-link'));
      fs.lchownSync(p(lost, 'many/new/svc-link'), SVC_UID, SVC_GID);
      fs.symlinkSync('f5.conf', p(lost, 'many/to-f5'));
      sh('setfattr', '-h', '-n', 'trusted.origin', '-v', 'ops team', p(lost, 'many/to-f5'));
      fs.symlinkSync('f7.conf', p(lost, 'many/to-f7'));
      fs.lutimesSync(p(lost, 'many/to-f7'), 1_500_000_000, 1_500_000_000);
      for (const args of [['watch', top], ['snapshot'], ['push']]) {
        const r = await lost.pacha(args);
        expect(r.code, r.stderr).toBe(0);
      }
      // The fresh host has the folder already, with a default ACL: every new file in it gets an
      // access ACL from it, which the snapshot does not have.
      const fresh = makeTestHost({ name: 'many', tmpDir: base, config });
      fs.mkdirSync(p(fresh, 'many'), { recursive: true });
      sh('setfacl', '-d', '-m', 'u:0:rwx', p(fresh, 'many'));
      const r = await fresh.pacha(['-v', 'rebuild', 'many', '--yes', '--verify']);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stderr).toMatch(/new files written by [12] thread\(s\)/);
      expect(getfattr(p(fresh, 'many/f5.conf'))).toEqual(['user.origin=0sb3BzIHRlYW0=']);
      expect(getfattr(p(fresh, 'many/f6.conf'))).toEqual(getfattr(p(lost, 'many/f6.conf')));
      expect(getfattr(p(fresh, 'many/f7.conf'))).toEqual([]);
      const owners = (x: string) => {
        const st = fs.lstatSync(p(fresh, x));
        return [st.uid, st.gid];
      };
      expect([owners('many/new/svc.conf'), owners('many/new/svc-link'), owners('many/new/root.conf')]).toEqual([[SVC_UID, SVC_GID], [SVC_UID, SVC_GID], [0, 0]]);
      // The folder the rebuild made got the default ACL from its parent, and so did its files: removed.
      expect([getfattr(p(fresh, 'many/new')), getfattr(p(fresh, 'many/new/root.conf'))]).toEqual([[], []]);
      // Symlinks: one with an attribute (handed back by its thread), one without.
      expect(fs.readlinkSync(p(fresh, 'many/to-f5'))).toBe('f5.conf');
      expect(getfattr(p(fresh, 'many/to-f5'))).toEqual(['trusted.origin=0sb3BzIHRlYW0=']);
      expect(fs.lstatSync(p(fresh, 'many/to-f7')).mtimeMs).toBe(1_500_000_000_000);
      const st = fs.statSync(p(fresh, 'many/f7.conf'));
      expect([st.mode & 0o7777, fs.readFileSync(p(fresh, 'many/f7.conf'), 'utf8')]).toEqual([0o640, 'value = 7\n']);
      // The folder's own default ACL is the snapshot's (none), set last.
      expect(getfattr(p(fresh, 'many'))).toEqual([]);
    } finally {
      fs.rmSync(base, { recursive: true, force: true });
    }
  });
});

function sh(cmd: string, ...args: string[]): string {
  return execFileSync(cmd, args, { encoding: 'utf8' });
}

/** getfattr's lines for one path (its own attributes), values in base64. */
function getfattr(p: string): string[] {
  return sh('getfattr', '-d', '-m', '-', '-h', '-e', 'base64', '--absolute-names', p)
    .split('\n')
    .filter((l) => l !== '' && !l.startsWith('#'))
    .sort();
}
