import { execFileSync, spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runNode, runProgram, REPO_DIR, type RunOptions } from '@pacha/test-support/cli';
import { makeTestHost, type TestHost } from '@pacha/test-support/host';
import { embeddedTarget, startMaster, writeAgentConfig, type MasterHandle } from '@pacha/test-support/master';
import { CONFIG_KEYS, parseConfig } from '@pacha/shared/config';
import { PACHA_VERSION } from '@pacha/shared/version';
import { compareTrees } from './tree-compare.ts';
import { askBundledWorkers } from './worker-smoke.ts';

// `npm run package` builds a .deb that carries its own Node: build it once (gzip instead of xz,
// the only difference from the release build), check it as dpkg and lintian see it, then unpack
// it and run the round trip with no node reachable on PATH.
let work: string;
let deb: string;
let root: string;
const hosts: TestHost[] = [];
let master: MasterHandle | undefined;
let roundTripHost: TestHost | undefined;

beforeAll(async () => {
  work = fs.mkdtempSync(path.join(os.tmpdir(), 'pacha-package-test-'));
  const r = await runNode(path.join(REPO_DIR, 'scripts/package.ts'), ['--out', work, '--fast', '--json'], { timeoutMs: 590_000 });
  expect(r.code, r.stderr).toBe(0);
  deb = JSON.parse(r.stdout).deb;
  root = path.join(work, 'root');
  execFileSync('dpkg-deb', ['-x', deb, root]);
}, 600_000);

afterAll(async () => {
  await master?.stop();
  for (const h of hosts) h.cleanup();
  if (work) fs.rmSync(work, { recursive: true, force: true });
});

const dpkgDeb = (...args: string[]) => execFileSync('dpkg-deb', args, { encoding: 'utf8' });

describe('the .deb as dpkg sees it', () => {
  it('is named and described for this version and architecture', () => {
    expect(path.basename(deb)).toBe(`pacha_${PACHA_VERSION}_amd64.deb`);
    const info = dpkgDeb('--info', deb);
    expect(info).toMatch(/^ Package: pacha$/m);
    expect(info).toMatch(new RegExp(`^ Version: ${PACHA_VERSION.replace(/\./g, '\\.')}$`, 'm'));
    expect(info).toMatch(/^ Architecture: amd64$/m);
    // The Node binary's libraries (dpkg-shlibdeps) and adduser for the postinst; never nodejs.
    expect(info).toMatch(/^ Depends: .*libc6 \(>= [\d.]+\).*adduser/m);
    expect(info).not.toMatch(/nodejs/);
    expect(dpkgDeb('--info', deb, 'conffiles').trim()).toBe('/etc/pacha.conf');
    // The README names this very file where it says how the servers install pacha.
    expect(fs.readFileSync(path.join(REPO_DIR, 'README.md'), 'utf8')).toContain(`apt-get install ./${path.basename(deb)}`);
  });

  it('holds the programs, their runtime, units, config, man pages, completion, examples and copyright', () => {
    const contents = dpkgDeb('--contents', deb);
    const entries = new Map<string, string>();
    for (const line of contents.trim().split('\n')) {
      const f = line.split(/\s+/);
      entries.set(f[5].replace(/^\./, ''), `${f[0]} ${f[1]}`);
    }
    for (const f of ['/usr/bin/pacha', '/usr/bin/pacha-master', '/usr/lib/pacha/node']) expect(entries.get(f), f).toMatch(/^-rwxr-xr-x root\/root$/);
    for (const f of [
      '/usr/lib/pacha/pacha.bundle.cjs',
      '/usr/lib/pacha/pacha-master.bundle.cjs',
      '/usr/lib/pacha/koffi.node',
      '/usr/lib/pacha/pack-check-worker.bundle.cjs',
      '/usr/lib/pacha/pack-stream-worker.bundle.cjs',
      '/lib/systemd/system/pacha.service',
      '/lib/systemd/system/pacha-master.service',
      '/usr/share/man/man1/pacha.1.gz',
      '/usr/share/man/man5/pacha.conf.5.gz',
      '/usr/share/man/man8/pacha-master.8.gz',
      '/usr/share/bash-completion/completions/pacha',
      '/usr/share/doc/pacha/copyright',
      '/usr/share/doc/pacha/changelog.gz',
      '/usr/share/doc/pacha/install.md',
      '/usr/share/doc/pacha/examples/pacha_pre/10-apt-repository',
      '/usr/share/doc/pacha/examples/pacha_post/90-notify',
    ]) {
      expect(entries.get(f), f).toMatch(/^-rw-r--r-- root\/root$/);
    }
    expect(entries.get('/etc/pacha.conf')).toBe('-rw-r----- root/root');
    expect([...entries.keys()].some((f) => f.startsWith('/usr/lib/pacha/compile-cache/') && !f.endsWith('/'))).toBe(true);
  });

  it("holds the master's worker threads, each one runs", async () => {
    expect(await askBundledWorkers(path.join(root, 'usr/lib/pacha'), 'cjs')).toEqual({
      'pack-check-worker': { id: 1, error: expect.stringMatching(/none\.idx/) },
      'pack-stream-worker': { ok: false, error: 'aborted' },
      'pack-arrival-worker': { kind: 'stopped' },
    });
  });

  it('passes lintian with no errors', () => {
    const r = spawnSync('lintian', ['--fail-on', 'error', deb], { encoding: 'utf8' });
    expect(r.stdout).not.toMatch(/^E: /m);
    expect(r.status, r.stdout + r.stderr).toBe(0);
  }, 300_000);
});

describe('the unpacked package', () => {
  it('runs its units through /usr/bin and documents them in the man pages', () => {
    const agent = fs.readFileSync(path.join(root, 'lib/systemd/system/pacha.service'), 'utf8');
    expect(agent).toMatch(/^ExecStart=\/usr\/bin\/pacha daemon$/m);
    expect(agent).toMatch(/^Documentation=man:pacha\(1\)/m);
    const master = fs.readFileSync(path.join(root, 'lib/systemd/system/pacha-master.service'), 'utf8');
    expect(master).toMatch(/^ExecStart=\/usr\/bin\/pacha-master serve /m);
    expect(master).toMatch(/^User=pacha-master$/m);
    expect(dpkgDeb('--info', deb, 'postinst')).toMatch(/adduser --system .*pacha-master/s);
    for (const unit of [agent, master]) expect(unit).not.toMatch(/\/usr\/local|env node/);
  });

  it('has man pages groff renders without a warning, every config key in pacha.conf(5)', () => {
    for (const page of ['man1/pacha.1.gz', 'man5/pacha.conf.5.gz', 'man8/pacha-master.8.gz']) {
      const roff = zlib.gunzipSync(fs.readFileSync(path.join(root, 'usr/share/man', page)));
      const r = spawnSync('groff', ['-man', '-Tutf8', '-ww', '-z'], { input: roff, encoding: 'utf8' });
      expect(r.status).toBe(0);
      expect(r.stderr, page).toBe('');
    }
    const conf5 = zlib.gunzipSync(fs.readFileSync(path.join(root, 'usr/share/man/man5/pacha.conf.5.gz'))).toString();
    for (const key of Object.keys(CONFIG_KEYS)) expect(conf5, key).toContain(key.replace(/-/g, '\\-'));
  });

  it('ships /etc/pacha.conf with every key commented out, each one valid once uncommented', () => {
    const text = fs.readFileSync(path.join(root, 'etc/pacha.conf'), 'utf8');
    const asShipped = parseConfig(text, { file: '/etc/pacha.conf', root: '/' });
    expect(asShipped.warnings).toEqual([]);
    expect(asShipped.host).toBeUndefined();
    const uncommented = text.replace(/^;/gm, '');
    const all = parseConfig(uncommented, { file: '/etc/pacha.conf', root: '/' });
    expect(all.warnings).toEqual([]);
    for (const key of Object.keys(CONFIG_KEYS)) expect(uncommented, key).toMatch(new RegExp(`^${key.replace(/\./g, '\\.')} = `, 'm'));
  });

  it('completes every command pacha and pacha-master have', async () => {
    const completion = fs.readFileSync(path.join(root, 'usr/share/bash-completion/completions/pacha'), 'utf8');
    expect(spawnSync('bash', ['-n'], { input: completion }).status).toBe(0);
    const listed = (name: string) => new RegExp(`_${name.replace('-', '_')}\\(\\) \\{[\\s\\S]*?local commands="([^"]+)"`).exec(completion)![1].split(' ');
    for (const program of ['pacha', 'pacha-master']) {
      const help = await runProgram(path.join(root, 'usr/bin', program), ['--help'], { env: { PATH: noNodePath() } });
      const commands = [...help.stdout.matchAll(new RegExp(`^  ${program} ([a-z-]+)`, 'gm'))].map((m) => m[1]);
      expect(commands.length).toBeGreaterThan(3);
      expect(listed(program).sort()).toEqual([...new Set(commands)].sort());
    }
  });

  it('snapshots, pushes to its own embedded master and rebuilds, with no node on PATH', async () => {
    const bin = noNodePath();
    expect(spawnSync('/bin/sh', ['-c', 'command -v node'], { env: { PATH: bin } }).status).not.toBe(0);
    const env = { PATH: bin };
    const run = (h: TestHost, args: string[], opts: RunOptions = {}) =>
      runProgram(path.join(root, 'usr/bin/pacha'), args, { cwd: work, timeoutMs: 120_000, ...opts, env: { ...h.env, ...env, ...opts.env } });

    const version = await runProgram(path.join(root, 'usr/bin/pacha'), ['version'], { cwd: work, env });
    expect(version.stdout).toContain(`pacha ${PACHA_VERSION}`);

    master = await startMaster({ command: [path.join(root, 'usr/bin/pacha-master')], env, hosts: ['packaged'], args: ['--verbose'] });
    const h1 = makeTestHost({ name: 'packaged' });
    const h2 = makeTestHost({ name: 'packaged' });
    hosts.push(h1, h2);
    writeAgentConfig(h1, embeddedTarget(master));
    writeAgentConfig(h2, embeddedTarget(master));
    fs.mkdirSync(h1.p('/etc/app/conf.d'), { recursive: true });
    fs.writeFileSync(h1.p('/etc/app/app.conf'), 'port = 8080\n');
    fs.chmodSync(h1.p('/etc/app/app.conf'), 0o640);
    fs.symlinkSync('app.conf', h1.p('/etc/app/current'));
    // Enough files for a pack the master checks on its worker threads, bundled beside the master.
    fs.mkdirSync(h1.p('/etc/app/many'));
    for (let i = 0; i < 2100; i++) fs.writeFileSync(h1.p(`/etc/app/many/f${i}`), `file ${i}\n`);
    // Extended attributes go through koffi.node, which the package ships beside the bundle.
    execFileSync('setfattr', ['-n', 'user.pacha', '-v', 'packaged', h1.p('/etc/app/app.conf')]);

    expect((await run(h1, ['watch', '/etc/app'])).code).toBe(0);
    const snap = await run(h1, ['snapshot', '--json']);
    expect(snap.code, snap.stderr).toBe(0);
    expect(JSON.parse(snap.stdout).commit).toMatch(/^[0-9a-f]{40}$/);
    const push = await run(h1, ['push']);
    expect(push.code, push.stdout + push.stderr).toBe(0);
    await master.waitForLog(/push accepted: host=packaged/);
    await master.waitForLog(/placed from the upload as received, \d+ entries checked on the way in/);

    const rb = await run(h2, ['rebuild', 'packaged', '--yes']);
    expect(rb.code, rb.stdout + rb.stderr).toBe(0);
    expect(compareTrees(h1.root, h2.root, ['/etc/app']).differences).toEqual([]);
    expect(execFileSync('getfattr', ['--only-values', '-n', 'user.pacha', h2.p('/etc/app/app.conf')], { encoding: 'utf8' })).toBe('packaged');
    roundTripHost = h1;
  }, 300_000);

  it('runs the daemon: its reconcile child, the push and the metrics textfile', async () => {
    const h = roundTripHost!;
    expect(h).toBeDefined();
    writeAgentConfig(h, embeddedTarget(master!), { 'pacha.metrics.path': '/var/lib/node-exporter/pacha.prom' });
    fs.mkdirSync(h.p('/var/lib/node-exporter'), { recursive: true });
    fs.writeFileSync(h.p('/etc/app/app.conf'), 'port = 9090\n');
    // The start-up reconcile runs in a child process that the daemon forks from its own launcher.
    const daemon = spawn(path.join(root, 'usr/bin/pacha'), ['daemon'], { cwd: work, env: { ...process.env, ...h.env, PATH: noNodePath() }, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    const exited = new Promise<number | null>((resolve) => daemon.on('exit', (code) => resolve(code)));
    await new Promise<void>((resolve, reject) => {
      const onData = (d: Buffer) => {
        out += d;
        if (/snapshot [0-9a-f]{12}: .*reconcile \(start\)/.test(out) && /pushed 1 snapshot/.test(out)) resolve();
      };
      daemon.stdout!.on('data', onData);
      daemon.stderr!.on('data', onData);
      void exited.then((code) => reject(new Error(`the daemon exited (${code}) early:\n${out}`)));
    });
    daemon.kill('SIGTERM');
    expect(await exited, out).toBe(0);
    expect(fs.readFileSync(h.p('/var/lib/node-exporter/pacha.prom'), 'utf8')).toMatch(/^pacha_agent_pending_snapshots 0$/m);
  }, 120_000);
});

// Installed for real, only in CI (CI=true), as root, on a machine without pacha: dpkg -i runs
// the maintainer scripts (the pacha-master user), then remove keeps the conffile and purge the
// state directories, as docs/install.md says.
const installable = process.env.CI === 'true' && process.getuid?.() === 0 && !fs.existsSync('/usr/lib/pacha') && !fs.existsSync('/etc/pacha.conf') && spawnSync('dpkg-query', ['-W', 'pacha']).status !== 0;
describe.runIf(installable)('dpkg -i (CI only)', () => {
  it('installs, runs without a Node on PATH, removes and purges', () => {
    const dpkg = (...args: string[]) => execFileSync('dpkg', args, { encoding: 'utf8', env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
    dpkg('-i', deb);
    try {
      expect(execFileSync('/usr/bin/pacha', ['version'], { encoding: 'utf8', env: { PATH: noNodePath() } })).toContain(`pacha ${PACHA_VERSION}`);
      expect(execFileSync('getent', ['passwd', 'pacha-master'], { encoding: 'utf8' })).toMatch(/^pacha-master:x:\d+:\d+:.*:\/var\/lib\/pacha-master:/);
      expect(fs.existsSync('/etc/pacha.conf')).toBe(true);
    } finally {
      dpkg('-r', 'pacha');
    }
    expect(fs.existsSync('/usr/bin/pacha')).toBe(false);
    expect(fs.existsSync('/usr/lib/pacha')).toBe(false);
    expect(fs.existsSync('/etc/pacha.conf')).toBe(true); // a conffile stays until purge
    dpkg('-P', 'pacha');
    expect(fs.existsSync('/etc/pacha.conf')).toBe(false);
  }, 300_000);
});

/** A PATH folder with the few tools the tests' hosts need, and no node. */
function noNodePath(): string {
  const dir = path.join(work, 'path');
  if (!fs.existsSync(dir)) {
    fs.mkdirSync(dir);
    for (const tool of ['sh', 'env', 'true']) {
      const found = execFileSync('sh', ['-c', `command -v ${tool}`], { encoding: 'utf8' }).trim();
      fs.symlinkSync(found, path.join(dir, tool));
    }
  }
  return dir;
}
