import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { makeTestHost, type TestHost } from '@pacha/test-support/host';
import { generatePackages, writeDpkgDatabase, type FakePackage } from '@pacha/test-support/dpkg-fixture';
import { startDaemon, until } from './daemon-harness.ts';

// .pacha/packages and .pacha/accounts through the CLI, on a host inside a temporary root dir
// with a fabricated dpkg database: recorded by `pacha snapshot` (a package change alone is a
// snapshot), shown by `pacha diff` and `pacha log -p`.

let hosts: TestHost[] = [];
afterEach(() => {
  for (const h of hosts) h.cleanup();
  hosts = [];
});

function host(): { h: TestHost; pkgs: FakePackage[]; git: (args: string[]) => string } {
  const h = makeTestHost({ config: { 'pacha.watch': '/srv/app', 'pacha.accounts': 'backup' } });
  hosts.push(h);
  fs.writeFileSync(h.p('/etc/passwd'), 'root:x:0:0:root:/root:/bin/bash\nbob:x:1001:1001:Bob,,,:/home/bob:/bin/sh\n');
  fs.writeFileSync(h.p('/etc/group'), 'root:x:0:\nbackup:x:34:bob\nbob:x:1001:\n');
  fs.mkdirSync(h.p('/srv/app'), { recursive: true });
  fs.writeFileSync(h.p('/srv/app/a.conf'), 'a\n');
  const pkgs = generatePackages(3);
  writeDpkgDatabase(h.root, pkgs);
  const git = (args: string[]) => execFileSync('git', ['--git-dir', h.p('/var/lib/pacha/repo'), ...args], { encoding: 'utf8' });
  return { h, pkgs, git };
}

describe('packages and accounts in snapshots', () => {
  it('records both files; a package upgrade, install and removal alone make a snapshot, listed by diff and log -p', async () => {
    const { h, pkgs, git } = host();
    let r = await h.pacha(['snapshot']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toBe('');
    expect(git(['show', 'HEAD:.pacha/packages'])).toBe(
      '# package manager: dpkg (name, architecture, version, manual|auto[,held])\npkg00000\tall\t1:1.0.0-1+deb12u0\tauto,held\npkg00002\tamd64\t3.2.2-3+deb12u0\tmanual\n',
    );
    // root owns the files; backup is named in pacha.accounts.
    expect(git(['show', 'HEAD:.pacha/accounts'])).toBe(
      '# accounts (group: name, gid, members; user: name, uid, gid, gecos, home, shell)\ngroup\tbackup\t34\tbob\ngroup\troot\t0\nuser\troot\t0\t0\troot\t/root\t/bin/bash\n',
    );
    expect((await h.pacha(['diff'])).stdout).toBe('no differences\n');
    expect((await h.pacha(['snapshot'])).stdout).toBe('no changes\n');

    // apt upgrades pkg00002, installs pkg00003, removes pkg00000; no watched file changes.
    pkgs[2].version = '3.2.3-1';
    pkgs[0].state = 'config-files';
    writeDpkgDatabase(h.root, [...pkgs, { name: 'pkg00003', version: '1.0-1', auto: false }]);
    r = await h.pacha(['diff']);
    expect(r.stdout).toBe('package  -pkg00000\npackage  pkg00002 3.2.2-3+deb12u0 → 3.2.3-1\npackage  +pkg00003 1.0-1\n');
    const d = JSON.parse((await h.pacha(['diff', '--json'])).stdout);
    expect(d.packages).toEqual(['-pkg00000', 'pkg00002 3.2.2-3+deb12u0 → 3.2.3-1', '+pkg00003 1.0-1']);
    r = await h.pacha(['snapshot']);
    expect(r.stdout).toMatch(/^[0-9a-f]{40} 0 added, 0 changed, 0 deleted, 0 metadata-only\n$/);
    // The commit message says what changed besides the files.
    expect(git(['log', '-1', '--format=%B'])).toContain('\npackages: 1 installed, 1 removed, 1 upgraded or downgraded\n');

    // bob comes to own a file: his account (and his group) join the snapshot.
    fs.chownSync(h.p('/srv/app/a.conf'), 1001, 1001);
    r = await h.pacha(['diff']);
    expect(r.stdout).toBe('changed  /srv/app/a.conf (owner root:0 -> bob:1001, group root:0 -> bob:1001)\naccount  +group bob 1001\naccount  +user bob 1001:1001 /home/bob /bin/sh\n');
    expect((await h.pacha(['snapshot'])).code).toBe(0);
    expect(git(['log', '-1', '--format=%B'])).toContain('\naccounts: 2 added\n');

    r = await h.pacha(['log', '-p']);
    expect(r.code, r.stderr).toBe(0);
    const lines = r.stdout.split('\n');
    expect(lines[1]).toBe('    account  +group bob 1001');
    expect(lines[2]).toBe('    account  +user bob 1001:1001 /home/bob /bin/sh');
    expect(lines.slice(4, 7)).toEqual(['    package  -pkg00000', '    package  pkg00002 3.2.2-3+deb12u0 → 3.2.3-1', '    package  +pkg00003 1.0-1']);
    // The first snapshot: counts, not every package.
    expect(lines.slice(8, 10)).toEqual(['    package  2 dpkg packages recorded', '    account  1 users and 2 groups recorded']);
    const j = JSON.parse((await h.pacha(['log', '-p', '--json', '-n', '2'])).stdout);
    expect(j[1].packages).toEqual(['-pkg00000', 'pkg00002 3.2.2-3+deb12u0 → 3.2.3-1', '+pkg00003 1.0-1']);
    expect(j[0].accounts).toEqual(['+group bob 1001', '+user bob 1001:1001 /home/bob /bin/sh']);
    // Without -p, log stays as it was.
    expect((await h.pacha(['log'])).stdout.split('\n').filter((l) => l.startsWith(' '))).toEqual([]);
    // bob owns nothing any more: he leaves the accounts again.
    fs.chownSync(h.p('/srv/app/a.conf'), 0, 0);
    expect((await h.pacha(['snapshot'])).code).toBe(0);
    expect(git(['show', 'HEAD:.pacha/accounts'])).not.toContain('bob:');
    expect(git(['diff', 'HEAD~1', 'HEAD', '--', '.pacha/accounts'])).toMatch(/^-user\tbob\t1001\t/m);
    execFileSync('git', ['--git-dir', h.p('/var/lib/pacha/repo'), 'fsck', '--full', '--strict']);
  });

  it('the daemon snapshots a package change though no watched file changed', async () => {
    const { h, pkgs, git } = host();
    h.writeConfig({ 'pacha.watch': '/srv/app', 'pacha.frequency': 0 });
    const d = startDaemon(h);
    try {
      await until('the first snapshot', () => git(['show', 'HEAD:.pacha/packages']).includes('pkg00002\tamd64\t3.2.2-3+deb12u0'));
      const first = git(['rev-parse', 'HEAD']).trim();
      // dpkg writes status-new and renames it over status.
      pkgs[2].version = '3.2.3-1';
      writeDpkgDatabase(h.root, pkgs);
      await until('a snapshot of the upgrade', () => git(['show', 'HEAD:.pacha/packages']).includes('pkg00002\tamd64\t3.2.3-1'), 30_000);
      expect(git(['rev-parse', 'HEAD~1']).trim()).toBe(first);
      expect(d.stderr()).not.toMatch(/error/);
    } finally {
      expect((await d.stop()).code).toBe(0);
    }
  });
});
