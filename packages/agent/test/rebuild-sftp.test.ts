import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { git, writeHook } from '@pacha/test-support/git-fixture';
import { makeTestHost, type TestHost } from '@pacha/test-support/host';
import { embeddedTarget, opensshTarget, startMaster, writeAgentConfig, type MasterHandle, type SftpTarget } from '@pacha/test-support/master';
import { startSshd, type SshdHandle } from '@pacha/test-support/sshd';
import { SVC_GID, SVC_UID, addUserHook, listTree, uniqueTop } from './rebuild-helpers.ts';

// The whole story over SFTP, against the embedded master and a real OpenSSH sshd: a host
// snapshots and pushes its files with pacha, dies, and a fresh machine with only a config and
// the key rebuilds it. The rebuilt tree equals the original in contents, types, modes, owners,
// groups, link targets and mtimes; nothing is written outside the new root.

let master: MasterHandle;
let sshd: SshdHandle | null;
let base: string;

beforeAll(async () => {
  base = fs.mkdtempSync(path.join(os.tmpdir(), 'pacha-rb-sftp-'));
  master = await startMaster({ tmpDir: base });
  sshd = await startSshd({ what: 'pacha rebuild from OpenSSH', tmpDir: base });
});
afterAll(async () => {
  await master?.stop();
  await sshd?.stop();
  fs.rmSync(base, { recursive: true, force: true });
});

const PASSWD = 'root:x:0:0:root:/root:/bin/sh\n';
const GROUP = 'root:x:0:\n';

/** The lost host's files, made for real: every case the original Pacha got wrong. */
function populate(h: TestHost, top: string): string[] {
  fs.appendFileSync(h.p('/etc/passwd'), `svcuser:x:${SVC_UID}:${SVC_GID}::/nonexistent:/usr/sbin/nologin\n`);
  fs.appendFileSync(h.p('/etc/group'), `svcgroup:x:${SVC_GID}:\n`);
  const p = (x: string) => h.p(`${top}/${x}`);
  const dir = (x: string, mode: number, uid = 0, gid = 0) => {
    fs.mkdirSync(p(x), { recursive: true });
    fs.chownSync(p(x), uid, gid);
    fs.chmodSync(p(x), mode);
  };
  const file = (x: string, content: string | Buffer, mode: number, uid = 0, gid = 0) => {
    fs.writeFileSync(p(x), content);
    fs.chownSync(p(x), uid, gid);
    fs.chmodSync(p(x), mode);
  };
  dir('a/conf', 0o755);
  file('a/conf/app.conf', 'from a\n', 0o644);
  file('a/conf/secret.key', 'k3y\n', 0o600);
  dir('b/conf', 0o750, 0, SVC_GID);
  file('b/conf/app.conf', 'from b\n', 0o640);
  dir('app', 0o755);
  dir('app/bin', 0o755);
  file('app/bin/tool', '#!/bin/sh\necho tool\n', 0o4755);
  dir('app/shared', 0o1777);
  dir('app/empty', 0o700);
  dir('app/data', 0o2750, SVC_UID, SVC_GID);
  file('app/data/state.db', Buffer.from([0, 1, 2, 255, 10, 13]), 0o640, SVC_UID, SVC_GID);
  fs.symlinkSync('bin/tool', p('app/link'));
  fs.symlinkSync('../nowhere/missing', p('app/dangling'));
  file('app/name with spaces é ü.txt', 'utf-8 ✓\n', 0o644);
  file('app/old.txt', 'deleted before the last snapshot\n', 0o644);
  return [`${top}/a/conf`, `${top}/b/conf`, `${top}/app`];
}

function snapshotListing(h: TestHost, top: string) {
  const t = top.slice(1);
  const l = listTree(h.root, { mtimes: true, skip: (rel) => !(rel === t || rel.startsWith(t + '/')) });
  for (const k of [t, `${t}/a`, `${t}/b`]) l.delete(k);
  // Directory mtimes change as their contents are written; compare those of files and links.
  for (const v of l.values()) if (v.type === 'dir') delete v.mtimeNs;
  return l;
}

const targets: { name: string; get: () => SftpTarget | null }[] = [
  { name: 'the embedded master', get: () => embeddedTarget(master) },
  { name: 'OpenSSH sshd', get: () => (sshd ? opensshTarget(sshd) : null) },
];

describe.each(targets)('pacha rebuild from $name', (target) => {
  it('rebuilds a pushed host on a fresh machine, equal to the original', async (ctx) => {
    const t = target.get();
    if (!t) return ctx.skip();
    const hostName = `rb-${target.name.split(' ')[1].replace(/[^a-z]/g, '')}`;
    const top = uniqueTop();

    // The host that will be lost: watch, snapshot, delete a file, snapshot, push.
    const lost = makeTestHost({ name: hostName, tmpDir: base });
    fs.writeFileSync(lost.p('/etc/passwd'), PASSWD);
    fs.writeFileSync(lost.p('/etc/group'), GROUP);
    writeAgentConfig(lost, t);
    const roots = populate(lost, top);
    let r = await lost.pacha(['watch', ...roots]);
    expect(r.code, r.stderr).toBe(0);
    r = await lost.pacha(['snapshot', '-m', 'first']);
    expect(r.code, r.stderr).toBe(0);
    fs.rmSync(lost.p(`${top}/app/old.txt`));
    r = await lost.pacha(['snapshot', '-m', 'second']);
    expect(r.code, r.stderr).toBe(0);
    r = await lost.pacha(['push']);
    expect(r.code, r.stderr).toBe(0);
    const expected = snapshotListing(lost, top);
    expect(expected.size).toBe(15);

    // The operator's hooks on the master: the pre hook creates the service user.
    const hostDir = t.hostDir(hostName);
    fs.mkdirSync(path.join(hostDir, 'pacha_pre'), { recursive: true });
    fs.mkdirSync(path.join(hostDir, 'pacha_post'), { recursive: true });
    addUserHook(path.join(hostDir, 'pacha_pre'), '10-users');
    writeHook(path.join(hostDir, 'pacha_post'), '10-done', '#!/bin/sh\necho "post saw $(ls "$PACHA_ROOT_DIR"' + top + '/app | wc -l) entries"\n');

    // A fresh machine: a config and the key, nothing else.
    const fresh = makeTestHost({ name: hostName, tmpDir: base });
    fs.writeFileSync(fresh.p('/etc/passwd'), PASSWD);
    fs.writeFileSync(fresh.p('/etc/group'), GROUP);
    writeAgentConfig(fresh, t);
    r = await fresh.pacha(['rebuild', hostName, '--yes', '--verify']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain(`SSH connection: ${t.userFor(hostName)}@127.0.0.1`);
    expect(r.stdout).toContain(`SSH port: ${t.port}`);
    expect(r.stdout).toContain(`Host to rebuild: ${hostName}`);
    expect(r.stderr).toContain('[post 10-done] post saw 7 entries');
    expect(r.stderr).not.toContain('does not exist');

    const rebuilt = snapshotListing(fresh, top);
    // utimes takes seconds as a double: mtimes come back to well under a microsecond.
    for (const [k, v] of rebuilt) {
      const want = expected.get(k)?.mtimeNs;
      if (v.mtimeNs !== undefined && want !== undefined) {
        const d = v.mtimeNs - want;
        expect(d < 1000n && d > -1000n, `${k}: mtime ${v.mtimeNs} vs ${want}`).toBe(true);
        v.mtimeNs = want;
      }
    }
    expect(rebuilt).toEqual(expected);
    expect(fs.existsSync(fresh.p(`${top}/app/old.txt`))).toBe(false);
    expect(fs.existsSync(top)).toBe(false);
    expect(fs.existsSync(fresh.p('/tmp'))).toBe(false);

    // The rebuilt host continues the master's history: its next snapshot and push are accepted.
    fs.writeFileSync(fresh.p(`${top}/a/conf/app.conf`), 'changed after the rebuild\n');
    r = await fresh.pacha(['snapshot']);
    expect(r.code, r.stderr).toBe(0);
    r = await fresh.pacha(['push']);
    expect(r.code, r.stderr).toBe(0);

    // --at the first snapshot brings back the file deleted later (a dry run first: nothing changes).
    const first = git(path.join(hostDir, 'repo'), ['rev-list', '--reverse', 'main']).split('\n')[0];
    const before = listTree(fresh.root, { mtimes: true, skip: (rel) => rel === 'var' });
    r = await fresh.pacha(['rebuild', hostName, '--dry-run', '--at', first.slice(0, 8)]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain(`Snapshot: ${first}`);
    expect(r.stdout).toContain(`replace  ${top}/a/conf/app.conf (content`);
    expect(r.stdout).toContain(`create   ${top}/app/old.txt (file 33 bytes`);
    expect(listTree(fresh.root, { mtimes: true, skip: (rel) => rel === 'var' })).toEqual(before);
    r = await fresh.pacha(['rebuild', hostName, '--yes', '--at', first]);
    expect(r.code, r.stderr).toBe(0);
    expect(fs.readFileSync(fresh.p(`${top}/app/old.txt`), 'utf8')).toBe('deleted before the last snapshot\n');
    expect(fs.readFileSync(fresh.p(`${top}/a/conf/app.conf`), 'utf8')).toBe('from a\n');
  });
});

// The rebuild command starts its connection before the rebuild's modules load (the handshake
// overlaps them). A rebuild refused before it fetches anything must still close it: an open
// SSH connection (ssh2's keepalive) would keep the process from ever exiting.
describe('a rebuild refused before its fetch', () => {
  it('closes the connection it opened early and exits', async (ctx) => {
    if (!sshd) return ctx.skip();
    const t = opensshTarget(sshd);
    const hostName = 'rb-early';
    const h = makeTestHost({ name: hostName, tmpDir: base });
    writeAgentConfig(h, t);
    // A bound of its own, well below the test's: a process left hanging is killed (code 128).
    let r = await h.pacha(['rebuild', hostName, '--yes', '--hook-timeout', '0'], { timeoutMs: 20_000 });
    expect(r.code, r.stderr).toBe(2);
    expect(r.stderr).toContain('--hook-timeout 0');
    fs.mkdirSync(h.p('/var/lib/pacha'), { recursive: true });
    fs.writeFileSync(h.p('/var/lib/pacha/pacha.pid'), `${process.pid} daemon\n`);
    r = await h.pacha(['rebuild', hostName, '--yes'], { timeoutMs: 20_000 });
    expect(r.code, r.stderr).toBe(1);
    expect(r.stderr).toMatch(/daemon/);
  });
});
