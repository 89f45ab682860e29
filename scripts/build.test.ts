import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runNode, runProgram, REPO_DIR } from '@pacha/test-support/cli';
import { makeTestHost, type TestHost } from '@pacha/test-support/host';
import { compareTrees } from './tree-compare.ts';
import { askBundledWorkers } from './worker-smoke.ts';

// The bundled files (npm run build) must work on a host with nothing but Node 24:
// run them from a folder outside the repository, with no node_modules around.
let out: string;
const hosts: TestHost[] = [];

beforeAll(async () => {
  out = fs.mkdtempSync(path.join(os.tmpdir(), 'pacha-dist-'));
  const r = await runNode(path.join(REPO_DIR, 'scripts/build.ts'), ['--out', out], { timeoutMs: 120_000 });
  expect(r.code, r.stderr).toBe(0);
}, 130_000);

afterAll(() => {
  fs.rmSync(out, { recursive: true, force: true });
  for (const h of hosts) h.cleanup();
});

describe('bundled pacha.mjs and pacha-master.mjs', () => {
  it('prints help for both programs', async () => {
    const a = await runNode(path.join(out, 'pacha.mjs'), ['--help'], { cwd: out });
    expect(a.code).toBe(0);
    expect(a.stdout).toMatch(/pacha rebuild <host>/);
    const m = await runNode(path.join(out, 'pacha-master.mjs'), ['--help'], { cwd: out });
    expect(m.code).toBe(0);
    expect(m.stdout).toMatch(/pacha-master serve/);
    expect(fs.existsSync(path.join(out, 'pacha.service'))).toBe(true);
    expect(fs.existsSync(path.join(out, 'koffi.node'))).toBe(true); // extended attributes, loaded from beside the bundle
  });

  it('starts without building what string-width builds (it is loaded on first use)', async () => {
    // A preload that notes every Intl.Segmenter made: string-width makes one when it loads.
    const preload = path.join(out, 'note-segmenter.mjs');
    fs.writeFileSync(
      preload,
      "const S = Intl.Segmenter; Intl.Segmenter = class extends S { constructor(...a) { super(...a); process.stderr.write('segmenter made\\n'); } };\n",
    );
    for (const [bundle, args] of [['pacha.mjs', ['version']], ['pacha.mjs', ['--help']], ['pacha-master.mjs', ['--help']]] as const) {
      const r = await runProgram(process.execPath, ['--import', preload, path.join(out, bundle), ...args], { cwd: out });
      expect(r.code, r.stderr).toBe(0);
      expect(r.stderr).toBe('');
    }
    // The preload sees it when string-width does load (text other than printable ASCII).
    const seen = await runProgram(process.execPath, ['--import', preload, '-e', "require('string-width')"], { cwd: path.join(REPO_DIR, 'packages/shared') });
    expect(seen.stderr).toContain('segmenter made');
  });

  it("bundles the master's worker threads beside it, each one runs", async () => {
    expect(await askBundledWorkers(out, 'esm')).toEqual({
      'pack-check-worker': { id: 1, error: expect.stringMatching(/none\.idx/) },
      'pack-stream-worker': { ok: false, error: 'aborted' },
      'pack-arrival-worker': { kind: 'stopped' },
    });
  });

  it('takes a snapshot, pushes it and rebuilds the host', async () => {
    const base = fs.mkdtempSync(path.join(os.tmpdir(), 'pacha-dist-hosts-'));
    const master = { 'pacha.host': 'file://', 'pacha.hosts.path': base };
    const h1 = makeTestHost({ name: 'bundled', config: master });
    const h2 = makeTestHost({ name: 'bundled', config: master });
    hosts.push(h1, h2);
    fs.mkdirSync(h1.p('/etc/app/conf.d'), { recursive: true });
    fs.writeFileSync(h1.p('/etc/app/app.conf'), 'port = 8080\n', { mode: 0o640 });
    fs.chmodSync(h1.p('/etc/app/app.conf'), 0o640);
    fs.symlinkSync('app.conf', h1.p('/etc/app/current'));
    execFileSync('setfacl', ['-m', 'u:4242:rw', h1.p('/etc/app/app.conf')]); // an ACL: koffi.node beside the bundle reads it
    const pacha = (h: TestHost, args: string[]) => runNode(path.join(out, 'pacha.mjs'), args, { cwd: out, env: h.env });

    expect((await pacha(h1, ['watch', '/etc/app'])).code).toBe(0);
    const snap = await pacha(h1, ['snapshot', '--json']);
    expect(snap.code, snap.stderr).toBe(0);
    expect(JSON.parse(snap.stdout).commit).toMatch(/^[0-9a-f]{40}$/);
    const push = await pacha(h1, ['push']);
    expect(push.code, push.stderr).toBe(0);

    const rb = await pacha(h2, ['rebuild', 'bundled', '--yes']);
    expect(rb.code, rb.stdout + rb.stderr).toBe(0);
    expect(compareTrees(h1.root, h2.root, ['/etc/app']).differences).toEqual([]);
    expect(execFileSync('getfacl', ['-n', '-c', h2.p('/etc/app/app.conf')], { encoding: 'utf8' })).toContain('user:4242:rw-');
    fs.rmSync(base, { recursive: true, force: true });
  });

  it('without koffi.node beside it, a snapshot warns once and records no attributes, and succeeds', async () => {
    const bare = fs.mkdtempSync(path.join(os.tmpdir(), 'pacha-dist-bare-'));
    fs.copyFileSync(path.join(out, 'pacha.mjs'), path.join(bare, 'pacha.mjs'));
    const h = makeTestHost({ name: 'bare', config: { 'pacha.host': 'file://', 'pacha.hosts.path': bare } });
    hosts.push(h);
    fs.mkdirSync(h.p('/etc/app'), { recursive: true });
    fs.writeFileSync(h.p('/etc/app/app.conf'), 'x\n');
    execFileSync('setfattr', ['-n', 'user.tag', '-v', '1', h.p('/etc/app/app.conf')]);
    const pacha = (args: string[]) => runNode(path.join(bare, 'pacha.mjs'), args, { cwd: bare, env: h.env });
    expect((await pacha(['watch', '/etc/app'])).code).toBe(0);
    const snap = await pacha(['snapshot']);
    expect(snap.code, snap.stderr).toBe(0);
    expect(snap.stderr.match(/extended attributes \(ACLs, capabilities, SELinux labels\) are not recorded: koffi.node not found/g)).toHaveLength(1);
    expect(execFileSync('git', ['--git-dir', h.p('/var/lib/pacha/repo'), 'show', 'HEAD:etc/app/.pacha'], { encoding: 'utf8' })).not.toContain('user.tag');
    fs.rmSync(bare, { recursive: true, force: true });
  });
});
