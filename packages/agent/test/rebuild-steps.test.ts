import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { commitSnapshot, initBareRepo, masterHostDir, packRepo, writeHook } from '@pacha/test-support/git-fixture';
import { makeTestHost, type TestHost } from '@pacha/test-support/host';
import { generatePackages, writeDpkgDatabase } from '@pacha/test-support/dpkg-fixture';
import { uniqueTop } from './rebuild-helpers.ts';

// The rebuild's accounts and packages steps on a host inside a temporary root dir: users and
// groups are created in the root's /etc/passwd and /etc/group by the real groupadd/useradd
// (--prefix), packages are planned and reported (apt cannot install under another root).
// The snapshot is built with native git (test-support/git-fixture.ts) and carries the two files.

let base: string | undefined;
afterEach(() => {
  if (base) fs.rmSync(base, { recursive: true, force: true });
  base = undefined;
});

const ACCOUNTS =
  '# accounts (group: name, gid, members; user: name, uid, gid, gecos, home, shell)\n' +
  'group\tappgroup\t4322\tother\n' +
  'group\tclash\t33\n' +
  'group\troot\t0\n' +
  'user\tappuser\t4321\t4322\tThe app,,,\t/srv/app\t/usr/sbin/nologin\n' +
  'user\tother\t4400\t4322\t\t/nonexistent\t/bin/sh\n' +
  'user\troot\t0\t0\troot\t/root\t/bin/bash\n' +
  'user\ttaken\t33\t4322\t\t/nonexistent\t/usr/sbin/nologin\n';
const PACKAGES = '# package manager: dpkg (name, architecture, version, manual|auto[,held])\nhello\tamd64\t2.10-3\tmanual\nlibc6\tamd64\t2.36-9\tauto\npkg00002\tamd64\t3.2.2-3+deb12u0\tmanual,held\n';

function world(): { host: TestHost; master: ReturnType<typeof masterHostDir>; top: string } {
  base = fs.mkdtempSync(path.join(os.tmpdir(), 'pacha-rbs-'));
  const hostsPath = path.join(base, 'hosts');
  const master = masterHostDir(hostsPath, 'app1');
  initBareRepo(master.repo);
  const top = uniqueTop();
  commitSnapshot(master.repo, {
    roots: [`${top}/app`],
    entries: [
      { path: `${top}/app`, type: 'dir', mode: 0o750, user: 'appuser', uid: 4321, group: 'appgroup', gid: 4322 },
      { path: `${top}/app/app.conf`, type: 'file', content: 'x\n', mode: 0o640, user: 'appuser', uid: 4321, group: 'appgroup', gid: 4322 },
      { path: `${top}/app/www`, type: 'file', content: 'w\n', mode: 0o644, user: 'taken', uid: 33, group: 'clash', gid: 33 },
    ],
    extraBlobs: { '.pacha/accounts': ACCOUNTS, '.pacha/packages': PACKAGES },
  });
  packRepo(master.repo);
  const host = makeTestHost({ name: 'app1', tmpDir: base, config: { 'pacha.host': 'file://', 'pacha.hosts.path': hostsPath } });
  fs.writeFileSync(host.p('/etc/passwd'), 'root:x:0:0:root:/root:/bin/bash\nwww-data:x:33:33:www-data:/var/www:/usr/sbin/nologin\n');
  fs.writeFileSync(host.p('/etc/group'), 'root:x:0:\nwww-data:x:33:\n');
  // pkg00002 is installed here (as a dependency, not held); hello and libc6 are not.
  writeDpkgDatabase(host.root, generatePackages(3).map((p) => ({ ...p, want: 'install', auto: true })));
  return { host, master, top };
}

const journal = (h: TestHost) => JSON.parse(fs.readFileSync(h.p('/var/lib/pacha/hooks/app1.json'), 'utf8')) as { runs: { phase: string; name: string; ok: boolean; outputTail: string }[] };

describe('pacha rebuild: accounts and packages steps under a root dir', () => {
  it('--dry-run shows the accounts and packages it would create and install, and changes nothing', async () => {
    const { host } = world();
    const passwd = fs.readFileSync(host.p('/etc/passwd'), 'utf8');
    const r = await host.pacha(['rebuild', 'app1', '--dry-run']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain('Accounts to create: 5\n');
    expect(r.stdout).toContain('  create group appgroup (gid 4322)\n');
    expect(r.stdout).toContain('  create group clash (gid 33 is taken by www-data: a new gid)\n');
    expect(r.stdout).toContain('  create user appuser (uid 4321, group appgroup, home /srv/app, shell /usr/sbin/nologin)\n');
    expect(r.stdout).toContain('  create user taken (uid 33 is taken by www-data: a new uid, group appgroup');
    expect(r.stdout).toMatch(/Packages to install: 1 \(not installed: apt-get cannot install under PACHA_ROOT_DIR .* \(apt has no root option\)/);
    expect(r.stdout).toContain('  install hello 2.10-3\n');
    expect(r.stdout).toContain('  mark pkg00002 manual\n');
    expect(r.stdout).toContain('  hold pkg00002\n');
    expect(r.stderr).toContain('warning: /etc/apt is not in the snapshot');
    expect(fs.readFileSync(host.p('/etc/passwd'), 'utf8')).toBe(passwd);
    expect(fs.existsSync(host.p('/var/lib/pacha/hooks'))).toBe(false);
  });

  it('creates the groups and users with their recorded ids before the files, maps taken ids with a warning naming the files; journalled, nothing done twice', async () => {
    const { host, master, top } = world();
    // The pre hook sees no account yet: the step runs after it.
    writeHook(master.pre, '10-check', '#!/bin/sh\ngrep -c appuser "$PACHA_ROOT_DIR/etc/passwd" || echo "no appuser yet"\n');
    const r = await host.pacha(['rebuild', 'app1', '--yes']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toContain('[pre 10-check] no appuser yet');
    const users = fs.readFileSync(host.p('/etc/passwd'), 'utf8');
    const groups = fs.readFileSync(host.p('/etc/group'), 'utf8');
    expect(users).toMatch(/^appuser:[^:]*:4321:4322:The app,,,:\/srv\/app:\/usr\/sbin\/nologin$/m);
    expect(users).toMatch(/^other:[^:]*:4400:4322::\/nonexistent:\/bin\/sh$/m);
    expect(groups).toMatch(/^appgroup:[^:]*:4322:other$/m);
    // uid 33 and gid 33 belong to www-data here: new ids, and the files are named.
    const takenUid = Number(/^taken:[^:]*:(\d+):/m.exec(users)![1]);
    const clashGid = Number(/^clash:[^:]*:(\d+):/m.exec(groups)![1]);
    expect(takenUid).not.toBe(33);
    expect(clashGid).not.toBe(33);
    expect(r.stderr).toContain(`warning: user taken: the recorded uid 33 belongs to www-data on this host: created with ${takenUid}; ${top}/app/www gets user taken (${takenUid}), not 33`);
    expect(r.stderr).toContain(`warning: group clash: the recorded gid 33 belongs to www-data on this host: created with ${clashGid}`);
    // The files got the owners by name, as created.
    const st = fs.statSync(host.p(`${top}/app/app.conf`));
    expect([st.uid, st.gid]).toEqual([4321, 4322]);
    const www = fs.statSync(host.p(`${top}/app/www`));
    expect([www.uid, www.gid]).toEqual([takenUid, clashGid]);
    // Packages: reported, not installed.
    expect(r.stderr).toMatch(/warning: packages not installed: apt-get cannot install under PACHA_ROOT_DIR .*: install hello 2.10-3, mark pkg00002 manual, hold pkg00002/);
    const j = journal(host);
    expect(j.runs.map((x) => `${x.phase} ${x.name} ${x.ok}`)).toEqual(['pre 10-check true', 'step accounts true', 'step packages true']);
    expect(j.runs[1].outputTail).toMatch(/^created group appgroup, group clash, user appuser, user other, user taken\n/);

    // The same rebuild again: every account exists, nothing is created; the run is journalled.
    const again = await host.pacha(['rebuild', 'app1', '--yes']);
    expect(again.code, again.stderr).toBe(0);
    expect(again.stdout).toContain('Accounts to create: none\n');
    expect(fs.readFileSync(host.p('/etc/passwd'), 'utf8')).toBe(users);
    const j2 = journal(host);
    expect(j2.runs.slice(3).map((x) => `${x.phase} ${x.name} ${x.ok} ${x.outputTail.split('\n')[0]}`)).toEqual(['step accounts true nothing to create', 'step packages true nothing installed']);
  });

  it('--no-accounts and --no-packages skip the steps', async () => {
    const { host } = world();
    const passwd = fs.readFileSync(host.p('/etc/passwd'), 'utf8');
    const r = await host.pacha(['rebuild', 'app1', '--yes', '--no-accounts', '--no-packages']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain('Accounts to create: skipped (--no-accounts)\n');
    expect(r.stdout).toContain('Packages to install: skipped (--no-packages)\n');
    expect(fs.readFileSync(host.p('/etc/passwd'), 'utf8')).toBe(passwd);
    // The owners fall back to the recorded ids, as before the steps existed.
    expect(r.stderr).toContain('user "appuser" does not exist');
    expect(fs.existsSync(host.p('/var/lib/pacha/hooks/app1.json'))).toBe(false);
  });
});
