import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { commitSnapshot, packRepo, writeHook } from '@pacha/test-support/git-fixture';
import { PACHA_BIN } from '@pacha/test-support/cli';
import { SVC_GID, SVC_UID, addUserHook, expectedListing, listTree, makeWorld, type RebuildWorld } from './rebuild-helpers.ts';

// End to end through the CLI, against a master folder (LocalTransport, pacha.host = file://).

let world: RebuildWorld | undefined;
afterEach(() => {
  world?.cleanup();
  world = undefined;
});

const ids = { users: { root: 0, svcuser: SVC_UID }, groups: { root: 0, svcgroup: SVC_GID } };

function restoredListing(w: RebuildWorld) {
  const top = w.top.slice(1);
  const all = listTree(w.host.root, { skip: (rel) => !(rel === top || rel.startsWith(top + '/')) });
  // Directories above the roots are created by the rebuild but are not part of the snapshot.
  for (const k of [top, `${top}/a`, `${top}/b`]) all.delete(k);
  return all;
}

describe('pacha rebuild (local master folder)', () => {
  it('restores contents, types, modes, owners and link targets; runs hooks in order around the restore', async () => {
    world = makeWorld();
    const w = world;
    addUserHook(w.master.pre, '20-users');
    // 10-a must run before 20-users, both before any file is restored; post hooks after.
    writeHook(w.master.pre, '10-a', `#!/bin/sh\necho "pre 10-a tool=$(test -e "$PACHA_ROOT_DIR${w.top}/app/bin/tool" && echo yes || echo no) host=$PACHA_HOST commit=$PACHA_COMMIT cwd=$(pwd)" >> "$PACHA_ROOT_DIR/hooklog"\n`);
    writeHook(w.master.pre, 'README.txt-dir-is-ignored', '#!/bin/sh\necho "pre README" >> "$PACHA_ROOT_DIR/hooklog"\n');
    fs.mkdirSync(path.join(w.master.pre, 'subdir-not-a-hook'));
    writeHook(w.master.post, '50-post', `#!/bin/sh\necho "post tool=$(test -e "$PACHA_ROOT_DIR${w.top}/app/bin/tool" && echo yes || echo no)" >> "$PACHA_ROOT_DIR/hooklog"\n`);

    const r = await w.host.pacha(['rebuild', 'web1', '--yes', '--verify']);
    expect(r.stderr + r.stdout).toContain('Host to rebuild: web1');
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/Files to create: 15/);

    const log = fs.readFileSync(w.host.p('/hooklog'), 'utf8').trim().split('\n');
    expect(log[0]).toMatch(/^pre 10-a tool=no host=web1 commit=[0-9a-f]{40} cwd=.*\/tmp\/pacha-rebuild-web1-/);
    expect(log[0]).toContain(w.commits.current);
    expect(log[1]).toBe('pre README');
    expect(log[2]).toBe('post tool=yes');
    expect(r.stderr).toContain('[pre 20-users] created svcuser');

    expect(restoredListing(w)).toEqual(expectedListing(w.tree.current, ids));
    // Deleted before the last snapshot: not resurrected.
    expect(fs.existsSync(w.host.p(`${w.top}/app/old.txt`))).toBe(false);
    // mtimes as recorded (to the microsecond at least).
    const st = fs.lstatSync(w.host.p(`${w.top}/app/empty`), { bigint: true });
    expect(st.mtimeNs / 1000n).toBe(1_600_000_000_000_000_000n / 1000n);
    const f = fs.lstatSync(w.host.p(`${w.top}/app/bin/tool`), { bigint: true });
    expect(f.mtimeNs / 1000n).toBe(1_700_000_000_123_456_789n / 1000n);
    // Nothing outside the root.
    expect(fs.existsSync(w.top)).toBe(false);
    // Staging removed, journal and status written, local repository seeded with the master's history.
    expect(fs.existsSync(w.host.p("/tmp"))).toBe(false);
    const journal = JSON.parse(fs.readFileSync(w.host.p('/var/lib/pacha/hooks/web1.json'), 'utf8'));
    expect(journal.runs.map((x: { phase: string; name: string; ok: boolean }) => `${x.phase} ${x.name} ${x.ok}`)).toEqual([
      'pre 10-a true',
      'pre 20-users true',
      'pre README.txt-dir-is-ignored true',
      'post 50-post true',
    ]);
    const status = JSON.parse(fs.readFileSync(w.host.p('/var/lib/pacha/status.json'), 'utf8'));
    expect(status.lastRebuild).toMatchObject({ host: 'web1', commit: w.commits.current, outcome: 'ok' });
    const report = JSON.parse(fs.readFileSync(w.host.p('/var/lib/pacha/report.json'), 'utf8'));
    expect(Object.keys(report.rebuild.phases)).toEqual(expect.arrayContaining(['fetch', 'validate', 'hooks', 'restore', 'metadata']));
    expect(fs.readFileSync(w.host.p('/var/lib/pacha/repo/refs/heads/main'), 'utf8').trim()).toBe(w.commits.current);
  });

  it('restores below a setgid directory of the host (as /var/local on Debian): what it creates there gets its recorded group, not the inherited one', async () => {
    world = makeWorld();
    const w = world;
    addUserHook(w.master.pre, '20-users');
    // The host's directory above the roots is setgid and of another group: directories made in it
    // inherit the bit and the group, and files made in those the group.
    fs.mkdirSync(w.host.p(w.top));
    fs.chownSync(w.host.p(w.top), 0, 100);
    fs.chmodSync(w.host.p(w.top), 0o2775);
    const r = await w.host.pacha(['rebuild', 'web1', '--yes', '--verify']);
    expect(r.code, r.stderr).toBe(0);
    expect(restoredListing(w)).toEqual(expectedListing(w.tree.current, ids));
    expect(fs.lstatSync(w.host.p(`${w.top}/app/bin/tool`)).gid).toBe(0);
  });

  it('falls back to the numeric id with a warning naming the file and the user when no hook creates it', async () => {
    world = makeWorld();
    const w = world;
    const r = await w.host.pacha(['rebuild', 'web1', '--yes']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/warning: user "svcuser" does not exist in .*\/etc\/passwd: .*\/app\/data.*recorded numeric uid 4321/);
    expect(r.stderr).toMatch(/warning: group "svcgroup" does not exist in .*\/etc\/group/);
    const st = fs.lstatSync(w.host.p(`${w.top}/app/data/state.db`));
    expect([st.uid, st.gid]).toEqual([SVC_UID, SVC_GID]);
  });

  it('keeps replaced files, leaves unchanged ones, and with --delete moves extra files aside', async () => {
    world = makeWorld();
    const w = world;
    addUserHook(w.master.pre);
    const conf = w.host.p(`${w.top}/a/conf`);
    fs.mkdirSync(conf, { recursive: true });
    fs.writeFileSync(path.join(conf, 'app.conf'), 'local edit\n');
    fs.writeFileSync(path.join(conf, 'secret.key'), 'k3y\n');
    const inode = fs.statSync(path.join(conf, 'secret.key')).ino;
    fs.writeFileSync(path.join(conf, 'extra.txt'), 'not in the snapshot\n');
    // Types that changed: a directory where the snapshot has a symlink, a file where it has a directory.
    const app = w.host.p(`${w.top}/app`);
    fs.mkdirSync(path.join(app, 'link'), { recursive: true });
    fs.writeFileSync(path.join(app, 'link/inside'), 'x');
    fs.writeFileSync(path.join(app, 'empty'), 'was a file');
    const r = await w.host.pacha(['rebuild', 'web1', '--yes', '--delete', '--json']);
    expect(r.code, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out.counts).toMatchObject({ replaced: 3, deleted: 1 });
    expect(fs.readlinkSync(path.join(app, 'link'))).toBe('bin/tool');
    expect(fs.lstatSync(path.join(app, 'empty')).isDirectory()).toBe(true);
    expect(fs.readFileSync(path.join(conf, 'app.conf'), 'utf8')).toBe('from a, v2\n');
    expect(fs.statSync(path.join(conf, 'secret.key')).ino).toBe(inode);
    expect(fs.statSync(path.join(conf, 'secret.key')).mode & 0o7777).toBe(0o600);
    expect(fs.existsSync(path.join(conf, 'extra.txt'))).toBe(false);
    const kept = out.keptUnder as string;
    expect(kept.startsWith(w.host.p('/var/lib/pacha/replaced/'))).toBe(true);
    expect(fs.readFileSync(path.join(kept, w.top, 'a/conf/app.conf'), 'utf8')).toBe('local edit\n');
    expect(fs.readFileSync(path.join(kept, w.top, 'a/conf/extra.txt'), 'utf8')).toBe('not in the snapshot\n');
    expect(fs.readFileSync(path.join(kept, w.top, 'app/link/inside'), 'utf8')).toBe('x');
    expect(fs.readFileSync(path.join(kept, w.top, 'app/empty'), 'utf8')).toBe('was a file');
  });

  it('--dry-run prints every difference and changes nothing', async () => {
    world = makeWorld();
    const w = world;
    addUserHook(w.master.pre);
    const conf = w.host.p(`${w.top}/a/conf`);
    fs.mkdirSync(conf, { recursive: true });
    fs.writeFileSync(path.join(conf, 'app.conf'), 'local edit\n');
    fs.writeFileSync(path.join(conf, 'secret.key'), 'k3y\n', { mode: 0o644 });
    fs.chmodSync(path.join(conf, 'secret.key'), 0o644);
    fs.writeFileSync(path.join(conf, 'extra.txt'), 'x');
    const before = listTree(w.host.root, { mtimes: true });
    const r = await w.host.pacha(['rebuild', 'web1', '--dry-run', '--delete']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain(`replace  ${w.top}/a/conf/app.conf (content`);
    expect(r.stdout).toContain(`chmod    ${w.top}/a/conf/secret.key (chmod 0644 -> 0600)`);
    expect(r.stdout).toContain(`create   ${w.top}/app/link (symlink -> bin/tool`);
    expect(r.stdout).toContain(`delete   ${w.top}/a/conf/extra.txt`);
    expect(r.stdout).toContain('would run pacha_pre hook 10-users');
    expect(listTree(w.host.root, { mtimes: true })).toEqual(before);
  });

  it('--at restores an older snapshot (by time and by commit id), including a file deleted later', async () => {
    world = makeWorld();
    const w = world;
    addUserHook(w.master.pre);
    let r = await w.host.pacha(['rebuild', 'web1', '--yes', '--at', '2023-11-15T00:00:00Z']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain(`Snapshot: ${w.commits.old}`);
    expect(fs.readFileSync(w.host.p(`${w.top}/app/old.txt`), 'utf8')).toBe('deleted later\n');
    expect(fs.readFileSync(w.host.p(`${w.top}/a/conf/app.conf`), 'utf8')).toBe('from a\n');
    r = await w.host.pacha(['rebuild', 'web1', '--yes', '--at', w.commits.current.slice(0, 10), '--only', `${w.top}/a/conf`]);
    expect(r.code, r.stderr).toBe(0);
    expect(fs.readFileSync(w.host.p(`${w.top}/a/conf/app.conf`), 'utf8')).toBe('from a, v2\n');
    r = await w.host.pacha(['rebuild', 'web1', '--yes', '--at', '2001-01-01T00:00:00Z']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/no snapshot that old/);
  });

  it('--only restores a subtree and refuses a path outside the roots', async () => {
    world = makeWorld();
    const w = world;
    let r = await w.host.pacha(['rebuild', 'web1', '--yes', '--only', `${w.top}/app/bin`]);
    expect(r.code, r.stderr).toBe(0);
    expect(fs.existsSync(w.host.p(`${w.top}/app/bin/tool`))).toBe(true);
    expect(fs.existsSync(w.host.p(`${w.top}/a/conf`))).toBe(false);
    r = await w.host.pacha(['rebuild', 'web1', '--yes', '--only', '/etc']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/--only \/etc: not inside the snapshot's roots/);
  });

  it('without a terminal and without --yes it is a usage error, not a silent yes', async () => {
    world = makeWorld();
    const r = await world.host.pacha(['rebuild', 'web1']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/pass --yes/);
    expect(fs.existsSync(world.host.p(`${world.top}`))).toBe(false);
  });

  it('accepts the original spelling --rebuild HOST, runs the follow-up command and returns its exit code', async () => {
    world = makeWorld();
    const w = world;
    const r = await w.host.pacha(['--rebuild', 'web1', '--yes', '--', 'sh', '-c', `test -x "$PACHA_ROOT_DIR${w.top}/app/bin/tool" && echo follow-up ran && exit 7`]);
    expect(r.stdout).toContain('follow-up ran');
    expect(r.code).toBe(7);
  });

  it('refuses to run beside another pacha holding the lock (daemon, snapshot, push)', async () => {
    world = makeWorld();
    const w = world;
    fs.mkdirSync(w.host.p('/var/lib/pacha'), { recursive: true });
    fs.writeFileSync(w.host.p('/var/lib/pacha/pacha.pid'), `${process.pid} daemon\n`);
    const r = await w.host.pacha(['rebuild', 'web1', '--yes']);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`another pacha is running: daemon (pid ${process.pid})`);
    expect(fs.existsSync(w.host.p(w.top))).toBe(false);
  });

  it.skipIf(!fs.existsSync('/usr/bin/script'))('on a terminal, shows the plan and waits for Enter', async () => {
    world = makeWorld();
    const w = world;
    // script(1) gives the rebuild a pseudo-terminal; Enter arrives on it.
    const r = await new Promise<{ code: number | null; stdout: string }>((resolve) => {
      const child = spawn('/usr/bin/script', ['-qec', `${process.execPath} ${PACHA_BIN} rebuild web1`, '/dev/null'], { env: { ...process.env, ...w.host.env } });
      let stdout = '';
      child.stdout.on('data', (d) => {
        stdout += d;
        if (stdout.includes('Hit Enter')) child.stdin.write('\n');
      });
      child.on('close', (code) => resolve({ code, stdout }));
    });
    expect(r.stdout).toContain('Host to rebuild: web1');
    expect(r.stdout).toContain('Hit Enter to confirm or Ctrl-C to cancel');
    expect(r.code, r.stdout).toBe(0);
    expect(fs.existsSync(w.host.p(`${w.top}/app/bin/tool`))).toBe(true);
  });

  it('streams files larger than the in-memory limit, with their metadata, while the next files are written', async () => {
    world = makeWorld();
    const w = world;
    const big = crypto.randomBytes(9 * 1024 * 1024);
    const big2 = crypto.randomBytes(9 * 1024 * 1024 + 1);
    commitSnapshot(w.master.repo, {
      roots: [`${w.top}/big`],
      entries: [
        { path: `${w.top}/big`, type: 'dir', mode: 0o750 },
        { path: `${w.top}/big/a.bin`, type: 'file', content: big2, mode: 0o600 },
        { path: `${w.top}/big/blob.bin`, type: 'file', content: big, mode: 0o2640, gid: 1, group: 'daemon' },
        { path: `${w.top}/big/small.txt`, type: 'file', content: 'after the large ones\n', mode: 0o644 },
      ],
      time: 1_700_200_000,
    });
    packRepo(w.master.repo);
    const r = await w.host.pacha(['rebuild', 'web1', '--yes', '--verify']);
    expect(r.code, r.stderr).toBe(0);
    const f = w.host.p(`${w.top}/big/blob.bin`);
    expect(fs.readFileSync(f).equals(big)).toBe(true);
    expect(fs.readFileSync(w.host.p(`${w.top}/big/a.bin`)).equals(big2)).toBe(true);
    const st = fs.statSync(f);
    expect([st.mode & 0o7777, st.gid]).toEqual([0o2640, 1]);
    expect(fs.readdirSync(w.host.p(`${w.top}/big`)).sort()).toEqual(['a.bin', 'blob.bin', 'small.txt']);
  });

  it("never restores over (or deletes) pacha's own state dir, even inside a root", async () => {
    world = makeWorld();
    const w = world;
    commitSnapshot(w.master.repo, {
      roots: ['/var/lib'],
      entries: [
        { path: '/var/lib', type: 'dir' },
        { path: '/var/lib/app', type: 'dir' },
        { path: '/var/lib/app/x.conf', type: 'file', content: 'x\n' },
        { path: '/var/lib/pacha', type: 'dir' },
        { path: '/var/lib/pacha/watched', type: 'file', content: '/etc/evil\n' },
      ],
      time: 1_700_200_000,
    });
    fs.mkdirSync(w.host.p('/var/lib/pacha'), { recursive: true });
    fs.writeFileSync(w.host.p('/var/lib/pacha/keep-me'), 'state');
    const r = await w.host.pacha(['rebuild', 'web1', '--yes', '--delete']);
    expect(r.code, r.stderr).toBe(0);
    expect(fs.readFileSync(w.host.p('/var/lib/app/x.conf'), 'utf8')).toBe('x\n');
    expect(fs.readFileSync(w.host.p('/var/lib/pacha/keep-me'), 'utf8')).toBe('state');
    expect(fs.readFileSync(w.host.p('/var/lib/pacha/watched'), 'utf8')).toBe('/var/lib\n');
  });

  it('an unknown host is a clear failure', async () => {
    world = makeWorld();
    const r = await world.host.pacha(['rebuild', 'nosuchhost', '--yes']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/host "nosuchhost" has no repository on the master/);
  });
});
