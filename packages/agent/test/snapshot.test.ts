import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { PACHA_BIN, REPO_DIR } from '@pacha/test-support/cli';
import { makeTestHost, type TestHost } from '@pacha/test-support/host';

let hosts: TestHost[] = [];
afterEach(() => {
  for (const h of hosts) h.cleanup();
  hosts = [];
});
function host(config: Record<string, string | number> = {}): TestHost {
  const h = makeTestHost({ config });
  hosts.push(h);
  fs.writeFileSync(h.p('/etc/passwd'), 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534::/nonexistent:/usr/sbin/nologin\n');
  fs.writeFileSync(h.p('/etc/group'), 'root:x:0:\nnogroup:x:65534:\n');
  return h;
}

describe('pacha snapshot', () => {
  it('prints the commit and summary, then "no changes"; --json for scripts', async () => {
    const h = host();
    fs.mkdirSync(h.p('/etc/app'), { recursive: true });
    fs.writeFileSync(h.p('/etc/app/a.conf'), 'a\n');
    // the watch list file, as `pacha watch` writes it
    fs.mkdirSync(h.p('/var/lib/pacha'), { recursive: true });
    fs.writeFileSync(h.p('/var/lib/pacha/watched'), '/etc/app\n');
    const r1 = await h.pacha(['snapshot', '-m', 'initial import']);
    // This host has no package database: one notice, at the first snapshot only.
    expect(r1.stderr).toBe(`no package database (dpkg or rpm) under ${h.root}: .pacha/packages is not recorded\n`);
    expect(r1.code).toBe(0);
    expect(r1.stdout).toMatch(/^[0-9a-f]{40} 2 added, 0 changed, 0 deleted, 0 metadata-only\n$/);
    const r2 = await h.pacha(['snapshot']);
    expect(r2.code).toBe(0);
    expect(r2.stdout).toBe('no changes\n');
    expect(r2.stderr).toBe('');
    fs.writeFileSync(h.p('/etc/app/b.conf'), 'b\n');
    const r3 = await h.pacha(['snapshot', '--json']);
    expect(r3.code).toBe(0);
    const j = JSON.parse(r3.stdout);
    expect(j.commit).toMatch(/^[0-9a-f]{40}$/);
    // the directory's mtime changed too
    expect(j.summary).toMatchObject({ added: 1, changed: 0, deleted: 0, metadataOnly: 1, total: 3 });
    expect(Object.keys(j.phases)).toEqual(['load', 'scan', 'hash', 'trees', 'write', 'commit']);
    // the lock is released
    expect(fs.existsSync(h.p('/var/lib/pacha/pacha.pid'))).toBe(false);
  });

  it('refuses to snapshot an empty watch list instead of recording every file as deleted', async () => {
    const h = host();
    const r = await h.pacha(['snapshot']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/nothing is watched: add paths with `pacha watch PATH...`/);
    expect(fs.existsSync(h.p('/var/lib/pacha/repo/refs/heads/main'))).toBe(false);
  });

  it('a command line yargs refuses runs nothing: exit 2, the usage error alone', async () => {
    const h = host({ 'pacha.watch': '/etc' });
    for (const args of [['snapshot', '--bogus'], ['snapshot', 'extra']]) {
      const r = await h.pacha(args);
      expect(r.code).toBe(2);
      expect(r.stderr).toMatch(/^error: .*\n\(pacha --help shows the usage\)\n$/);
      expect(fs.existsSync(h.p('/var/lib/pacha/repo'))).toBe(false);
    }
  });

  it('refuses to run while another pacha holds the lock', async () => {
    const h = host({ 'pacha.watch': '/etc' });
    fs.mkdirSync(h.p('/var/lib/pacha'), { recursive: true });
    // pid 1 is always alive
    fs.writeFileSync(h.p('/var/lib/pacha/pacha.pid'), '1 daemon\n');
    const r = await h.pacha(['snapshot']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/another pacha is running: daemon \(pid 1\)/);
  });

  it('as a non-root user: records that user as owner and reports an unreadable file', async () => {
    const h = host({ 'pacha.watch': '/home/u/app', 'pacha.state.path': '/home/u/state' });
    fs.chmodSync(h.root, 0o755);
    fs.mkdirSync(h.p('/home/u/app/sub'), { recursive: true });
    fs.writeFileSync(h.p('/home/u/app/mine'), 'mine\n');
    fs.writeFileSync(h.p('/home/u/app/sub/also'), 'also\n');
    fs.writeFileSync(h.p('/home/u/app/secret'), 'root only\n');
    for (const p of ['/home/u', '/home/u/app', '/home/u/app/sub', '/home/u/app/mine', '/home/u/app/sub/also']) fs.chownSync(h.p(p), 65534, 65534);
    fs.chmodSync(h.p('/home/u/app/secret'), 0o600);
    const run = () =>
      new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
        execFile(
          'setpriv',
          ['--reuid=65534', '--regid=65534', '--clear-groups', process.execPath, PACHA_BIN, 'snapshot', '--json'],
          { env: { ...process.env, ...h.env }, cwd: REPO_DIR },
          (err, stdout, stderr) => resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
        );
      });
    const r = await run();
    expect(r.stderr).toMatch(/warning: cannot read \/home\/u\/app\/secret: .*EACCES.*skipped/);
    expect(r.code).toBe(0);
    const j = JSON.parse(r.stdout);
    expect(j.commit).toMatch(/^[0-9a-f]{40}$/);
    expect(j.warnings).toHaveLength(1);
    const repo = h.p('/home/u/state/repo');
    const { execFileSync } = await import('node:child_process');
    const meta = (dir: string) => execFileSync('git', ['--git-dir', repo, 'show', `HEAD:${dir}/.pacha`], { encoding: 'utf8' });
    expect(meta('home/u/app')).toMatch(/^mine\tfile\t0644\tnobody:65534\tnogroup:65534\t/m);
    expect(meta('home/u/app/sub')).toMatch(/^\.\tdir\t0755\tnobody:65534\tnogroup:65534\t/m);
    expect(meta('home/u/app')).not.toContain('secret');
    expect(fs.statSync(path.join(repo, 'HEAD')).uid).toBe(65534);
    // a file that was snapshotted and became unreadable keeps its previous version
    fs.chmodSync(h.p('/home/u/app/mine'), 0o000);
    const again = await run();
    expect(again.code).toBe(0);
    expect(again.stderr).toMatch(/warning: cannot read \/home\/u\/app\/mine: .*EACCES.*previous version is kept/);
    expect(JSON.parse(again.stdout).commit).toBeNull();
    execFileSync('git', ['-c', `safe.directory=*`, '--git-dir', repo, 'fsck', '--full', '--strict'], { stdio: 'pipe' });
  });
});
