import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { loadAccounts } from '@pacha/shared/accounts';
import { silentLogger } from '@pacha/shared/log';
import { BlobSource } from '@pacha/shared/rebuild/blob-source';
import { ownerResolver } from '@pacha/shared/rebuild/owners';
import { planRestore } from '@pacha/shared/rebuild/plan';
import { readStagedSnapshot, resolveHead } from '@pacha/shared/rebuild/read';
import { restorePlan } from '@pacha/shared/rebuild/restore';
import { validateSnapshot } from '@pacha/shared/rebuild/validate';
import { commitSnapshot, packRepo, writeHook } from '@pacha/test-support/git-fixture';
import { PACHA_BIN } from '@pacha/test-support/cli';
import { SVC_GID, SVC_UID, listTree, makeWorld, type RebuildWorld } from './rebuild-helpers.ts';

// Written as alice, a local user whose home is restored: while the rebuild waits at its prompt
// (or runs its pre hooks, or between its plan and its restore) she replaces notes.txt by a
// symlink to a root-owned file and sub/ by a symlink to a root-owned directory, both outside
// the snapshot's roots. Through a symlink, the restore's chown/chmod/utimes and its new files
// would land there. After the rebuild, nothing outside the roots may have changed owner,
// mode, time or content; the swapped paths are refused and named, the rest is restored.
// The decoys are inside the test's root dir (relative link targets): a broken restore
// damages only them.

let world: RebuildWorld | undefined;
afterEach(() => {
  world?.cleanup();
  world = undefined;
});

const alice = { user: 'svcuser', uid: SVC_UID, group: 'svcgroup', gid: SVC_GID };

function aliceWorld(): RebuildWorld & { home: string; outside: () => ReturnType<typeof listTree>; swap: string } {
  const w = makeWorld();
  const home = `${w.top}/home/alice`;
  commitSnapshot(w.master.repo, {
    roots: [home],
    entries: [
      { path: home, type: 'dir', mode: 0o750, ...alice },
      { path: `${home}/notes.txt`, type: 'file', content: 'notes\n', mode: 0o644, mtimeNs: 1_500_000_000_000_000_000n, ...alice },
      { path: `${home}/sub`, type: 'dir', mode: 0o755, ...alice },
      { path: `${home}/sub/new.txt`, type: 'file', content: 'from the snapshot\n', mode: 0o644, ...alice },
      { path: `${home}/other.txt`, type: 'file', content: 'other\n', mode: 0o640, ...alice },
    ],
    time: 1_700_300_000,
  });
  packRepo(w.master.repo);
  // The host as the plan sees it: alice's home with notes.txt (same content, another mode:
  // the plan fixes its metadata) and an empty sub/.
  const h = (p: string) => w.host.p(p);
  fs.mkdirSync(h(`${home}/sub`), { recursive: true });
  fs.writeFileSync(h(`${home}/notes.txt`), 'notes\n', { mode: 0o600 });
  fs.chmodSync(h(`${home}/notes.txt`), 0o600);
  // Root's files outside the roots, the targets of the attack.
  fs.mkdirSync(h(`${w.top}/etc`), { mode: 0o755 });
  fs.writeFileSync(h(`${w.top}/etc/shadow`), 'root:$6$secret:19000::::::\n', { mode: 0o640 });
  fs.chmodSync(h(`${w.top}/etc/shadow`), 0o640);
  fs.utimesSync(h(`${w.top}/etc/shadow`), 1_000_000_000, 1_000_000_000);
  fs.utimesSync(h(`${w.top}/etc`), 1_000_000_000, 1_000_000_000);
  const top = w.top.slice(1);
  const homeRel = home.slice(1);
  // Everything but the roots, pacha's state and the staging dir, with mtimes.
  const outside = () => listTree(w.host.root, { mtimes: true, skip: (rel) => rel === 'var' || rel === 'tmp' || rel === homeRel || rel.startsWith(homeRel + '/') || rel === `${top}/home/alice` });
  const swap = `cd "${h(home)}" && mv notes.txt notes.orig && ln -s ../../etc/shadow notes.txt && mv sub sub.orig && ln -s ../../etc sub`;
  return { ...w, home, outside, swap };
}

function expectRefusedAndRest(w: ReturnType<typeof aliceWorld>, text: string) {
  expect(text).toMatch(new RegExp(`${w.home}/notes.txt: became a symlink since the plan: refused, not followed`));
  expect(text).toMatch(new RegExp(`${w.home}/sub: became a symlink since the plan: refused, not followed`));
  expect(text).toMatch(/2 path\(s\) changed on this host while the rebuild ran and were refused/);
  // The rest was restored.
  const other = w.host.p(`${w.home}/other.txt`);
  expect(fs.readFileSync(other, 'utf8')).toBe('other\n');
  expect([fs.statSync(other).mode & 0o7777, fs.statSync(other).uid]).toEqual([0o640, SVC_UID]);
  // Alice's symlinks are still hers to explain, untouched.
  expect(fs.readlinkSync(w.host.p(`${w.home}/notes.txt`))).toBe('../../etc/shadow');
  expect(fs.readlinkSync(w.host.p(`${w.home}/sub`))).toBe('../../etc');
}

describe('a local user racing the rebuild cannot redirect it', () => {
  it.skipIf(!fs.existsSync('/usr/bin/script'))('swap while the rebuild waits at its prompt: refused, nothing outside the roots changed', async () => {
    const w = aliceWorld();
    world = w;
    const before = w.outside();
    // script(1) gives the rebuild a terminal; Enter is typed only after the swap is done.
    const r = await new Promise<{ code: number | null; out: string }>((resolve) => {
      const child = spawn('/usr/bin/script', ['-qec', `${process.execPath} ${PACHA_BIN} rebuild web1`, '/dev/null'], { env: { ...process.env, ...w.host.env } });
      let out = '';
      let swapped = false;
      child.stdout.on('data', (d) => {
        out += d;
        if (!swapped && out.includes('Hit Enter')) {
          swapped = true;
          // The attacker: a second process, done before the operator confirms.
          execFileSync('sh', ['-c', w.swap]);
          child.stdin.write('\n');
        }
      });
      child.on('close', (code) => resolve({ code, out }));
    });
    expect(r.out).toContain('Files to leave: 3 (3 of them with owner, mode or mtime fixed)');
    expect(r.code, r.out).toBe(1);
    expectRefusedAndRest(w, r.out);
    expect(w.outside()).toEqual(before);
  });

  it('swap by a pacha_pre hook between the plan and the restore (--yes): nothing outside the roots changed', async () => {
    const w = aliceWorld();
    world = w;
    writeHook(w.master.pre, '10-alice', `#!/bin/sh\nset -e\n${w.swap}\n`);
    const before = w.outside();
    const r = await w.host.pacha(['rebuild', 'web1', '--yes']);
    expect(r.code, r.stderr).toBe(1);
    // The plan made again after the hooks sees the symlink before anything is written.
    expect(r.stderr).toMatch(new RegExp(`${w.home}/sub is a symlink on this host \\(-> \\.\\./\\.\\./etc\\)`));
    expect(w.outside()).toEqual(before);
  });

  it('a hard link to a file outside the roots is replaced by its own copy, never chowned or chmodded', async () => {
    const w = aliceWorld();
    world = w;
    // notes.txt is another name of a root file outside the roots, with the snapshot's content.
    const decoy = w.host.p(`${w.top}/etc/notes-of-root`);
    fs.writeFileSync(decoy, 'notes\n', { mode: 0o600 });
    fs.chmodSync(decoy, 0o600);
    fs.rmSync(w.host.p(`${w.home}/notes.txt`));
    fs.linkSync(decoy, w.host.p(`${w.home}/notes.txt`));
    fs.utimesSync(w.host.p(`${w.top}/etc`), 1_000_000_000, 1_000_000_000);
    const before = w.outside();
    const dry = await w.host.pacha(['rebuild', 'web1', '--dry-run']);
    expect(dry.stdout).toContain(`replace  ${w.home}/notes.txt (hard link (2 names): replaced by its own copy`);
    const r = await w.host.pacha(['rebuild', 'web1', '--yes']);
    expect(r.code, r.stderr).toBe(0);
    expect(w.outside()).toEqual(before);
    const st = fs.statSync(w.host.p(`${w.home}/notes.txt`));
    expect([st.nlink, st.mode & 0o7777, st.uid]).toEqual([1, 0o644, SVC_UID]);
  });

  it('swap right between the plan and the restore, at the descriptor level: refused, nothing outside changed', async () => {
    const w = aliceWorld();
    world = w;
    // The rebuild's own steps, with the attacker's swap between planRestore and restorePlan.
    const staged = path.join(w.hostsPath, 'web1', 'repo');
    const blobs = new BlobSource(staged);
    try {
      const commit = resolveHead(staged, blobs.objects);
      const snap = readStagedSnapshot(staged, blobs.objects, commit);
      const valid = await validateSnapshot(snap, { root: w.host.root, blobs });
      const resolver = ownerResolver(loadAccounts(w.host.root), w.host.root);
      const plan = await planRestore(valid, { root: w.host.root, resolver, deleteExtra: false });
      expect(plan.items.find((p) => p.item.hostPath === `${w.home}/notes.txt`)?.changes).toContain('chmod 0600 -> 0644');
      const before = w.outside();
      execFileSync('sh', ['-c', w.swap]);
      const keepDir = w.host.p('/var/lib/pacha/replaced/now');
      const res = await restorePlan(plan, { root: w.host.root, keepDir, resolver, log: silentLogger, blobs });
      expect(w.outside()).toEqual(before);
      expect(res.refused.map((r) => `${r.hostPath}: ${r.reason}`).sort()).toEqual([`${w.home}/notes.txt: became a symlink`, `${w.home}/sub: became a symlink`]);
      expect(res.refused.find((r) => r.hostPath.endsWith('/sub'))?.skipped).toBe(1);
      expect(fs.readFileSync(w.host.p(`${w.home}/other.txt`), 'utf8')).toBe('other\n');
      // Alice's real directory got nothing either: the new file was not written anywhere.
      expect(fs.readdirSync(w.host.p(`${w.home}/sub.orig`))).toEqual([]);
    } finally {
      blobs.close();
    }
  });
});
