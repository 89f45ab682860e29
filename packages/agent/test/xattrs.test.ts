import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { makeTestHost, type TestHost } from '@pacha/test-support/host';
import { embeddedTarget, opensshTarget, startMaster, writeAgentConfig, type MasterHandle } from '@pacha/test-support/master';
import { startSshd, type SshdHandle } from '@pacha/test-support/sshd';
import { uniqueTop } from './rebuild-helpers.ts';
import { killAll, startDaemon, tryGit, until } from './daemon-harness.ts';

// Extended attributes end to end, as root on the test machine's file system (ext4 or tmpfs with
// user xattrs): a file capability, an access ACL, a default ACL on a directory, a user.*
// attribute and a trusted.* attribute on a symlink (Linux allows user.* only on files and
// directories) survive snapshot -> push -> rebuild into a fresh root, over each transport, and
// are compared with getfattr, getcap and getfacl. The rebuilt host knows the ACL's user and
// group under other ids: the ACL follows the names.

let master: MasterHandle;
let sshd: SshdHandle | null;
let base: string;

beforeAll(async () => {
  base = fs.mkdtempSync(path.join(os.tmpdir(), 'pacha-xattr-e2e-'));
  master = await startMaster({ tmpDir: base });
  sshd = await startSshd({ what: 'extended attributes over OpenSSH', tmpDir: base });
});
afterAll(async () => {
  await master?.stop();
  await sshd?.stop();
  fs.rmSync(base, { recursive: true, force: true });
});

function sh(cmd: string, ...args: string[]): string {
  return execFileSync(cmd, args, { encoding: 'utf8' });
}

/** getfattr's lines for one path (its own attributes, symlinks not followed), values in base64. */
function getfattr(p: string, opts: { withoutAcls?: boolean } = {}): string[] {
  return sh('getfattr', '-d', '-m', '-', '-h', '-e', 'base64', '--absolute-names', p)
    .split('\n')
    .filter((l) => l !== '' && !l.startsWith('#'))
    .filter((l) => !opts.withoutAcls || !l.startsWith('system.posix_acl_'))
    .sort();
}

function getfacl(p: string): string[] {
  return sh('getfacl', '-n', '-c', '-p', p).trim().split('\n');
}

interface Target {
  name: string;
  /** Point a host at the master; returns the host tree folder on this machine. */
  configure(h: TestHost): string | null;
}

const targets: Target[] = [
  {
    name: 'a local folder',
    configure: (h) => {
      const hosts = path.join(base, 'local-hosts');
      fs.mkdirSync(hosts, { recursive: true });
      h.writeConfig({ 'pacha.host': 'file://', 'pacha.hosts.path': hosts });
      return path.join(hosts, h.name);
    },
  },
  {
    name: 'the embedded master',
    configure: (h) => {
      const t = embeddedTarget(master);
      writeAgentConfig(h, t);
      return t.hostDir(h.name);
    },
  },
  {
    name: 'OpenSSH sshd',
    configure: (h) => {
      if (!sshd) return null;
      const t = opensshTarget(sshd);
      writeAgentConfig(h, t);
      return t.hostDir(h.name);
    },
  },
];

describe.each(targets)('extended attributes through $name', (target) => {
  it('survive snapshot, push and rebuild; an attribute-only change is a snapshot of its own', async (ctx) => {
    const hostName = `xa-${target.name.split(' ').pop()!.replace(/[^a-z]/g, '')}`;
    const top = uniqueTop();
    const lost = makeTestHost({ name: hostName, tmpDir: base });
    if (target.configure(lost) === null) return ctx.skip();
    fs.writeFileSync(lost.p('/etc/passwd'), 'root:x:0:0:root:/root:/bin/sh\nalice:x:5001:5001::/home/alice:/bin/sh\n');
    fs.writeFileSync(lost.p('/etc/group'), 'root:x:0:\nalice:x:5001:\ndeploy:x:5002:\n');
    const p = (h: TestHost, x: string) => h.p(`${top}/${x}`);
    fs.mkdirSync(p(lost, 'bin'), { recursive: true });
    fs.mkdirSync(p(lost, 'share'));
    fs.mkdirSync(p(lost, 'conf'));
    fs.writeFileSync(p(lost, 'bin/ping-helper'), '#!/bin/sh\necho ping\n', { mode: 0o755 });
    fs.writeFileSync(p(lost, 'share/report.txt'), 'shared\n');
    fs.writeFileSync(p(lost, 'conf/app.conf'), 'port = 80\n');
    fs.writeFileSync(p(lost, 'conf/kept.conf'), 'same on both hosts\n');
    fs.symlinkSync('app.conf', p(lost, 'conf/current'));
    sh('setcap', 'cap_net_raw+ep', p(lost, 'bin/ping-helper'));
    sh('setfacl', '-m', 'u:5001:rw,g:5002:r', p(lost, 'share/report.txt'));
    sh('setfacl', '-d', '-m', 'g:5002:rwx', p(lost, 'share'));
    sh('setfattr', '-n', 'user.origin', '-v', 'ops team', p(lost, 'conf/app.conf'));
    sh('setfattr', '-h', '-n', 'trusted.pacha-test', '-v', 'on the link', p(lost, 'conf/current'));

    let r = await lost.pacha(['watch', top]);
    expect(r.code, r.stderr).toBe(0);
    r = await lost.pacha(['snapshot', '-m', 'first']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).not.toMatch(/extended attributes/);

    // An attribute-only change: seen by diff, a snapshot of its own, in the log.
    sh('setfattr', '-n', 'user.reviewed', '-v', 'yes', p(lost, 'conf/app.conf'));
    r = await lost.pacha(['diff', '--json']);
    expect(r.code, r.stderr).toBe(0);
    const changes = (JSON.parse(r.stdout) as { changes: { path: string; kind: string; details: string[] }[] }).changes;
    expect(changes).toHaveLength(1);
    expect(changes[0]).toMatchObject({ path: `${top}/conf/app.conf`, kind: 'metadata' });
    expect(changes[0].details.join(' ')).toMatch(/xattrs/);
    r = await lost.pacha(['snapshot', '-m', 'reviewed']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/0 added, 0 changed, 0 deleted, 1 metadata-only/);
    r = await lost.pacha(['log']);
    expect(r.stdout).toMatch(/0 added, 0 changed, 0 deleted, 1 metadata-only/);
    expect(r.stdout.trim().split('\n').filter((l) => /\b[0-9a-f]{7,40}\b/.test(l))).toHaveLength(2);
    r = await lost.pacha(['snapshot']);
    expect(r.stdout).toMatch(/no changes/);
    r = await lost.pacha(['push']);
    expect(r.code, r.stderr).toBe(0);

    // A fresh machine: alice and deploy have other ids; two files are already there with
    // attributes the snapshot does not have.
    const fresh = makeTestHost({ name: hostName, tmpDir: base });
    target.configure(fresh);
    fs.writeFileSync(fresh.p('/etc/passwd'), 'root:x:0:0:root:/root:/bin/sh\nalice:x:6001:6001::/home/alice:/bin/sh\n');
    fs.writeFileSync(fresh.p('/etc/group'), 'root:x:0:\nalice:x:6001:\ndeploy:x:6002:\n');
    fs.mkdirSync(p(fresh, 'conf'), { recursive: true });
    fs.writeFileSync(p(fresh, 'conf/app.conf'), 'old content\n');
    sh('setfattr', '-n', 'user.leftover', '-v', 'x', p(fresh, 'conf/app.conf'));
    fs.writeFileSync(p(fresh, 'conf/kept.conf'), 'same on both hosts\n');
    sh('setfattr', '-n', 'user.leftover', '-v', 'y', p(fresh, 'conf/kept.conf'));

    r = await fresh.pacha(['rebuild', hostName, '--dry-run']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(new RegExp(`${top}/conf/kept.conf.*xattrs.*-user\\.leftover`));
    expect(getfattr(p(fresh, 'conf/kept.conf'))).toEqual(['user.leftover=0seQ==']); // dry run: nothing changed

    r = await fresh.pacha(['rebuild', hostName, '--yes', '--verify']);
    expect(r.code, r.stdout + r.stderr).toBe(0);

    for (const x of ['bin/ping-helper', 'share', 'share/report.txt', 'conf/app.conf', 'conf/current', 'conf/kept.conf']) {
      expect(getfattr(p(fresh, x), { withoutAcls: true }), x).toEqual(getfattr(p(lost, x), { withoutAcls: true }));
    }
    expect(getfattr(p(fresh, 'conf/current'))).toEqual(['trusted.pacha-test=0sb24gdGhlIGxpbms=']);
    expect(getfattr(p(fresh, 'conf/kept.conf'))).toEqual([]);
    expect(getfattr(p(fresh, 'conf/app.conf'))).toEqual(['user.origin=0sb3BzIHRlYW0=', 'user.reviewed=0seWVz']);
    expect(sh('getcap', p(fresh, 'bin/ping-helper'))).toContain('cap_net_raw=ep');
    expect(getfacl(p(fresh, 'share/report.txt'))).toEqual(['user::rw-', 'user:6001:rw-', 'group::r--', 'group:6002:r--', 'mask::rw-', 'other::r--']);
    expect(getfacl(p(fresh, 'share')).filter((l) => l.startsWith('default:'))).toEqual([
      'default:user::rwx',
      'default:group::r-x',
      'default:group:6002:rwx',
      'default:mask::rwx',
      'default:other::r-x',
    ]);
  });
});

describe('extended attributes: SELinux labels and a repository that lies', () => {
  /** A host with one labelled file under `top`, snapshotted and pushed to a local folder master. */
  async function pushed(name: string, top: string, label: string): Promise<{ lost: TestHost; configure: (h: TestHost) => string | null }> {
    const lost = makeTestHost({ name, tmpDir: base });
    targets[0].configure(lost);
    fs.mkdirSync(lost.p(top), { recursive: true });
    fs.writeFileSync(lost.p(`${top}/app.conf`), 'x\n');
    // This kernel has no SELinux, but root may still store the attribute on ext4 and tmpfs.
    sh('setfattr', '-n', 'security.selinux', '-v', label, lost.p(`${top}/app.conf`));
    sh('setfattr', '-n', 'user.origin', '-v', 'ops', lost.p(`${top}/app.conf`));
    for (const args of [['watch', top], ['snapshot'], ['push']]) {
      const r = await lost.pacha(args);
      expect(r.code, r.stderr).toBe(0);
    }
    return { lost, configure: targets[0].configure };
  }

  it('a label is reported and skipped where the target has no SELinux, written with --selinux=force', async () => {
    const top = uniqueTop();
    const { configure } = await pushed('xa-selinux', top, 'system_u:object_r:etc_t:s0');
    const fresh = makeTestHost({ name: 'xa-selinux', tmpDir: base });
    configure(fresh);
    let r = await fresh.pacha(['rebuild', 'xa-selinux', '--yes', '--verify']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toContain(`security.selinux not restored on ${top}/app.conf: the target has no SELinux enabled (--selinux=force writes the labels anyway)`);
    expect(getfattr(fresh.p(`${top}/app.conf`))).toEqual(['user.origin=0sb3Bz']);
    r = await fresh.pacha(['rebuild', 'xa-selinux', '--yes', '--verify', '--selinux=force']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).not.toContain('not restored');
    expect(getfattr(fresh.p(`${top}/app.conf`))).toEqual(['security.selinux=0sc3lzdGVtX3U6b2JqZWN0X3I6ZXRjX3Q6czA=', 'user.origin=0sb3Bz']);
  });

  it('a malformed attribute in the repository is refused before anything is written', async () => {
    const top = uniqueTop();
    const { lost, configure } = await pushed('xa-lying', top, 'system_u:object_r:etc_t:s0');
    // Rewrite the directory's metadata on the master: the attribute's value loses its quotes.
    const repo = path.join(configure(lost)!, 'repo');
    const g = (args: string[], input?: string, env: NodeJS.ProcessEnv = {}) =>
      execFileSync('git', ['--git-dir', repo, ...args], { input, encoding: 'utf8', env: { ...process.env, GIT_AUTHOR_NAME: 't', GIT_AUTHOR_EMAIL: 't@t', GIT_COMMITTER_NAME: 't', GIT_COMMITTER_EMAIL: 't@t', ...env } }).trim();
    const metaPath = `${top.slice(1)}/.pacha`;
    const text = g(['show', `main:${metaPath}`]);
    expect(text).toContain('user.origin="ops"');
    const index = path.join(base, 'xa-lying.index');
    const ienv = { GIT_INDEX_FILE: index };
    g(['read-tree', 'main'], undefined, ienv);
    const blob = g(['hash-object', '-w', '--stdin'], text.replace('user.origin="ops"', 'user.origin=ops') + '\n');
    g(['update-index', '--cacheinfo', `100644,${blob},${metaPath}`], undefined, ienv);
    const tree = g(['write-tree'], undefined, ienv);
    const commit = g(['commit-tree', tree, '-p', 'main', '-m', 'lying'], undefined, ienv);
    g(['update-ref', 'refs/heads/main', commit]);
    g(['repack', '-a', '-d', '-q']);

    const fresh = makeTestHost({ name: 'xa-lying', tmpDir: base });
    configure(fresh);
    const r = await fresh.pacha(['rebuild', 'xa-lying', '--yes']);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`${top}/app.conf: bad value of extended attribute user.origin: expected "text", 0s<base64>, acl:... (ACLs) or cap:... (security.capability)`);
    expect(fs.existsSync(fresh.p(top))).toBe(false);
  });
});

describe('the daemon and attribute-only changes', () => {
  afterEach(killAll);

  it('a setcap and a setfacl reach the master through the watcher, each a metadata-only snapshot', async () => {
    const host = makeTestHost({ name: 'xa-daemon', tmpDir: base });
    const hosts = path.join(base, 'daemon-hosts');
    fs.mkdirSync(hosts, { recursive: true });
    // Hourly reconcile: only the watcher can bring these changes in within the test.
    host.writeConfig({ 'pacha.host': 'file://', 'pacha.hosts.path': hosts, 'pacha.frequency': 0, 'pacha.watch': '/etc/app', 'pacha.schedule': '0 0 * * * *' });
    fs.mkdirSync(host.p('/etc/app/conf.d'), { recursive: true });
    fs.writeFileSync(host.p('/etc/app/tool'), '#!/bin/sh\n', { mode: 0o755 });
    const masterRepo = path.join(hosts, 'xa-daemon', 'repo');
    const meta = (dir: string) => tryGit(masterRepo, ['show', `refs/heads/main:${dir}/.pacha`]) ?? '';
    const d = startDaemon(host);
    await until('the first snapshot on the master', () => meta('etc/app').includes('tool\t'));
    sh('setcap', 'cap_net_raw+ep', host.p('/etc/app/tool'));
    await until('the capability on the master', () => /^tool\t.*\tsecurity\.capability=cap:v2;e;p=cap_net_raw;i=$/m.test(meta('etc/app')));
    sh('setfacl', '-m', 'u:4242:rwx', host.p('/etc/app/conf.d'));
    await until('the ACL on the master', () => /^\.\t.*\tsystem\.posix_acl_access=acl:u::rwx,u::4242:rwx,/m.test(meta('etc/app/conf.d')));
    expect(d.stderr().match(/^snapshot [0-9a-f]{12}: 0 added, 0 changed, 0 deleted, 1 metadata-only/gm)).toHaveLength(2);
    expect(d.stderr()).not.toMatch(/reconcile \(schedule\)/);
    expect((await d.stop()).code).toBe(0);
  });
});
