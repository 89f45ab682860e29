import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runPacha } from '@pacha/test-support/cli';
import { startMaster, type MasterHandle } from '@pacha/test-support/master';

// The real thing on this Debian machine, as root, against the embedded master: a host records
// a package installed with apt (hello, from the Debian archive), its manual mark and an
// account with a fixed uid; it loses them; a rebuild brings them back with the same version
// and uid. apt cannot install under another root, so these rebuilds run with PACHA_ROOT_DIR=/:
// the watched files, the state dirs, the config and the keys all live in a temporary folder,
// and the package and the account are removed again afterwards.

const runnable = process.getuid?.() === 0 && fs.existsSync('/usr/bin/apt-get') && fs.existsSync('/usr/sbin/useradd');
const HOST = 'pkg-rebuild-host';
const USER = 'pacha-t-hello';
const APT = ['-o', 'DPkg::Lock::Timeout=600'];

let master: MasterHandle;
let base: string;
let id = 0;
let hadHello = false;

function sh(cmd: string, args: string[], ok = true): { code: number; out: string } {
  const r = spawnSync(cmd, args, { encoding: 'utf8', env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
  if (ok && r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${r.stdout}${r.stderr}`);
  return { code: r.status ?? 1, out: r.stdout };
}
const helloVersion = () => {
  const r = sh('dpkg-query', ['-W', '-f', '${db:Status-Abbrev}${Version}', 'hello'], false);
  return r.code === 0 && r.out.startsWith('ii') ? r.out.slice(3).trim() : null;
};
const account = (db: 'passwd' | 'group') => {
  const r = sh('getent', [db, USER], false);
  return r.code === 0 ? r.out.trim() : null;
};
function removeAccount(): void {
  if (account('passwd')) sh('userdel', [USER]);
  if (account('group')) sh('groupdel', [USER]);
}

/** An agent of HOST on this machine, root dir /, everything of its own under base/name. */
function agent(name: string): { state: string; pacha: (args: string[]) => ReturnType<typeof runPacha> } {
  const dir = path.join(base, name);
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  const key = path.join(dir, 'id_ed25519');
  fs.copyFileSync(master.keyFor(HOST), key);
  fs.chmodSync(key, 0o600);
  fs.writeFileSync(path.join(dir, 'known_hosts'), master.knownHostsLine + '\n', { mode: 0o600 });
  const conf = path.join(dir, 'pacha.conf');
  const keys: Record<string, string | number> = {
    'pacha.hostname': HOST,
    'pacha.host': '127.0.0.1',
    'pacha.ssh.port': master.port,
    'pacha.ssh.user': HOST,
    'pacha.ssh.key': key,
    'pacha.ssh.known_hosts': path.join(dir, 'known_hosts'),
    'pacha.hosts.path': master.virtualHostsPath,
    'pacha.state.path': path.join(dir, 'state'),
  };
  fs.writeFileSync(conf, ['[DEFAULT]', ...Object.entries(keys).map(([k, v]) => `${k} = ${v}`)].join('\n') + '\n');
  const env = { PACHA_ROOT_DIR: '/', PACHA_CONFIG: conf, HOME: '/root' };
  return { state: path.join(dir, 'state'), pacha: (args) => runPacha(args, { env, timeoutMs: 600_000 }) };
}

beforeAll(async () => {
  if (!runnable) return;
  base = fs.mkdtempSync(path.join(os.tmpdir(), 'pacha-rb-pkgs-'));
  master = await startMaster({ tmpDir: base, hosts: [HOST] });
  // A uid and gid free on this machine.
  for (id = 47110; id < 47200; id++) if (sh('getent', ['passwd', String(id)], false).code !== 0 && sh('getent', ['group', String(id)], false).code !== 0) break;
  hadHello = helloVersion() !== null;
}, 120_000);

afterAll(async () => {
  if (!runnable) return;
  await master?.stop();
  removeAccount();
  if (!hadHello && helloVersion() !== null) sh('apt-get', ['purge', '-y', '-q', ...APT, 'hello']);
  fs.rmSync(base, { recursive: true, force: true });
}, 300_000);

describe.runIf(runnable)('pacha rebuild installs packages and creates accounts (real apt, root dir /)', () => {
  it('records hello, its manual mark and an account; a rebuild brings them back with the same version and uid; dry run, --no-packages, second run', async () => {
    // The host to lose: hello installed by hand (a manual package), an account with a fixed uid
    // owning a watched file.
    if (helloVersion() === null) {
      if (sh('apt-cache', ['policy', 'hello']).out.includes('Candidate: (none)')) sh('apt-get', ['update', '-q', ...APT]);
      sh('apt-get', ['install', '-y', '-q', ...APT, 'hello']);
    }
    sh('apt-mark', ['manual', 'hello']);
    const version = helloVersion()!;
    removeAccount();
    sh('groupadd', ['-g', String(id), USER]);
    sh('useradd', ['-u', String(id), '-g', String(id), '-M', '-d', '/nonexistent', '-s', '/usr/sbin/nologin', USER]);
    const app = path.join(base, 'app');
    fs.mkdirSync(app);
    fs.writeFileSync(path.join(app, 'app.conf'), 'greeting = hello\n');
    fs.chownSync(path.join(app, 'app.conf'), id, id);

    const lost = agent('lost');
    let r = await lost.pacha(['watch', app]);
    expect(r.code, r.stderr).toBe(0);
    r = await lost.pacha(['snapshot']);
    expect(r.code, r.stderr).toBe(0);
    const git = (args: string[]) => execFileSync('git', ['--git-dir', path.join(lost.state, 'repo'), ...args], { encoding: 'utf8' });
    expect(git(['show', 'HEAD:.pacha/packages'])).toContain(`\nhello\tamd64\t${version}\tmanual\n`);
    expect(git(['show', 'HEAD:.pacha/accounts'])).toContain(`\nuser\t${USER}\t${id}\t${id}\t\t/nonexistent\t/usr/sbin/nologin\n`);
    r = await lost.pacha(['push']);
    expect(r.code, r.stderr).toBe(0);

    // The host is lost: the package, the account and the files are gone.
    sh('apt-get', ['remove', '-y', '-q', ...APT, 'hello']);
    removeAccount();
    fs.rmSync(app, { recursive: true });

    // --dry-run lists them and changes nothing.
    const fresh = agent('fresh');
    r = await fresh.pacha(['rebuild', HOST, '--dry-run']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain(`  create group ${USER} (gid ${id})\n`);
    expect(r.stdout).toContain(`  create user ${USER} (uid ${id}, group ${USER}, home /nonexistent, shell /usr/sbin/nologin)\n`);
    expect(r.stdout).toMatch(new RegExp(`Packages to install: 1\\n  install hello ${version.replace(/[.+]/g, '\\$&')}\\n`));
    expect(r.stderr).toContain('warning: /etc/apt is not in the snapshot');
    expect(helloVersion()).toBeNull();
    expect(account('passwd')).toBeNull();
    expect(fs.existsSync(app)).toBe(false);

    // --no-packages: the account comes back, the package does not.
    r = await fresh.pacha(['rebuild', HOST, '--yes', '--no-packages']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain('Packages to install: skipped (--no-packages)');
    expect(helloVersion()).toBeNull();
    expect(account('passwd')).toMatch(new RegExp(`^${USER}:x:${id}:${id}:`));
    removeAccount();
    fs.rmSync(app, { recursive: true });

    // The rebuild: both back, the same uid and version, the file owned by the account again.
    r = await fresh.pacha(['rebuild', HOST, '--yes']);
    expect(r.code, r.stderr).toBe(0);
    expect(helloVersion()).toBe(version);
    expect(sh('apt-mark', ['showmanual']).out.split('\n')).toContain('hello');
    expect(account('passwd')).toMatch(new RegExp(`^${USER}:x:${id}:${id}::/nonexistent:/usr/sbin/nologin$`));
    expect(account('group')).toMatch(new RegExp(`^${USER}:x:${id}:`));
    const st = fs.statSync(path.join(app, 'app.conf'));
    expect([st.uid, st.gid]).toEqual([id, id]);
    expect(r.stdout).toContain(`Accounts created: group ${USER}, user ${USER}`);
    expect(r.stdout).toContain(`Packages installed: hello=${version}`);

    // A second run installs and creates nothing; the journal says so.
    r = await fresh.pacha(['rebuild', HOST, '--yes']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain('Accounts to create: none\n');
    expect(r.stdout).toContain('Packages to install: none\n');
    const journal = JSON.parse(fs.readFileSync(path.join(fresh.state, 'hooks', `${HOST}.json`), 'utf8')) as { runs: { phase: string; name: string; ok: boolean; outputTail: string }[] };
    expect(journal.runs.map((x) => `${x.phase} ${x.name} ${x.ok} ${x.outputTail.split('\n')[0]}`)).toEqual([
      `step accounts true created group ${USER}, user ${USER}`,
      `step accounts true created group ${USER}, user ${USER}`,
      `step packages true installed hello=${version}`,
      'step accounts true nothing to create',
      'step packages true nothing installed',
    ]);
  }, 600_000);
});
