import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { embeddedTarget, startMaster, writeAgentConfig, type MasterHandle } from '@pacha/test-support/master';
import { makeTestHost, type TestHost } from '@pacha/test-support/host';
import { writeHook } from '@pacha/test-support/git-fixture';
import type { RunResult } from '@pacha/test-support/cli';

// Written as an attacker looking for secrets: a full run (snapshot, push, a push that fails,
// a rebuild with hooks from the master, check-config, status, hooks) with a callback URL that
// carries a password and an encrypted key with its passphrase; then every output, --json, the
// log file, the journal and every state file are searched for the password, the passphrase
// and the private key's bytes.

const PASSWORD = 'cbPass-7f3a9qZ';
const PASSPHRASE = 'pphrase-92kx1zW';

interface Hit {
  server: http.Server;
  url: string;
  auth: string[];
  bodies: string[];
}

async function callbackServer(): Promise<Hit> {
  const hit: Hit = { server: http.createServer(), url: '', auth: [], bodies: [] };
  hit.server.on('request', (req, res) => {
    let body = '';
    req.on('data', (d) => (body += d));
    req.on('end', () => {
      hit.auth.push(req.headers.authorization ?? '');
      hit.bodies.push(body);
      res.end('ok');
    });
  });
  await new Promise<void>((r) => hit.server.listen(0, '127.0.0.1', r));
  hit.url = `http://hookuser:${PASSWORD}@127.0.0.1:${(hit.server.address() as AddressInfo).port}/pacha`;
  return hit;
}

/** Every regular file under dir (paths relative to it), except those skip() names. */
function filesUnder(dir: string, skip: (rel: string) => boolean): string[] {
  const out: string[] = [];
  const walk = (rel: string) => {
    for (const e of fs.readdirSync(path.join(dir, rel), { withFileTypes: true })) {
      const r = rel ? `${rel}/${e.name}` : e.name;
      if (skip(r)) continue;
      if (e.isDirectory()) walk(r);
      else if (e.isFile()) out.push(r);
    }
  };
  walk('');
  return out;
}

describe('secrets appear in no output, log, journal or --json of a full run', () => {
  let m: MasterHandle;
  let cb: Hit;
  let src: TestHost;
  let dst: TestHost;
  beforeAll(async () => {
    m = await startMaster({ hosts: ['sechost'] });
    cb = await callbackServer();
    src = makeTestHost({ name: 'sechost' });
    dst = makeTestHost({ name: 'sechost' });
  });
  afterAll(async () => {
    await m.stop();
    cb.server.close();
    src.cleanup();
    dst.cleanup();
  });

  it('a callback password, a key passphrase and the key itself never show', async () => {
    const outputs: RunResult[] = [];
    const env = { PACHA_SSH_PASSPHRASE: PASSPHRASE, SSH_AUTH_SOCK: '' };
    const run = async (h: TestHost, args: string[], expectCode?: number) => {
      const r = await h.pacha(args, { env });
      outputs.push(r);
      if (expectCode !== undefined) expect(r.code, `${args.join(' ')}: ${r.stderr}`).toBe(expectCode);
      return r;
    };
    const extra = { 'pacha.callback.url': cb.url, 'pacha.log.path': '/var/log/pacha.log' };
    for (const h of [src, dst]) {
      writeAgentConfig(h, embeddedTarget(m), extra);
      fs.mkdirSync(h.p('/var/log'), { recursive: true });
      execFileSync('ssh-keygen', ['-p', '-q', '-N', PASSPHRASE, '-P', '', '-f', h.p('/etc/pacha/id_ed25519')], { stdio: 'ignore' });
    }
    const keyText = fs.readFileSync(src.p('/etc/pacha/id_ed25519'), 'utf8');
    const keyBody = keyText.split('\n').filter((l) => l.length > 0 && !l.startsWith('-----'));
    expect(keyBody.length).toBeGreaterThan(2);

    // The host to lose: snapshot, push, then a push that fails (nothing listens on port 1).
    fs.mkdirSync(src.p('/srv/app'), { recursive: true });
    fs.writeFileSync(src.p('/srv/app/app.conf'), 'listen 80\n');
    await run(src, ['watch', '/srv/app'], 0);
    await run(src, ['snapshot', '--json'], 0);
    await run(src, ['push', '--json'], 0);
    fs.writeFileSync(src.p('/srv/app/app.conf'), 'listen 8080\n');
    await run(src, ['snapshot'], 0);
    writeAgentConfig(src, embeddedTarget(m), { ...extra, 'pacha.ssh.port': 1 });
    const failed = await run(src, ['push'], 1);
    expect(failed.stderr).toMatch(/127\.0\.0\.1/);
    await run(src, ['status', '--json']);
    await run(src, ['check-config']);
    await run(src, ['check-config', '--json']);

    // Hooks from the master print their whole environment, and keep it in a file.
    const hostDir = m.hostDir('sechost');
    writeHook(path.join(hostDir, 'pacha_pre'), '10-env', '#!/bin/sh\nenv\nenv > "$PACHA_ROOT_DIR/hook-env"\n');
    writeHook(path.join(hostDir, 'pacha_post'), '10-env', '#!/bin/sh\nenv\n');
    await run(dst, ['rebuild', 'sechost', '--dry-run', '-v'], 0);
    const rebuilt = await run(dst, ['rebuild', 'sechost', '--yes', '--json', '-v'], 0);
    expect(JSON.parse(rebuilt.stdout).hooks.ran).toEqual(['10-env', '10-env']);
    await run(dst, ['hooks', 'sechost', '--json'], 0);
    await run(dst, ['hooks', 'sechost'], 0);
    await run(dst, ['check-config', '--json']);

    // The hooks really ran with an environment, only without the passphrase.
    const hookEnv = fs.readFileSync(dst.p('/hook-env'), 'utf8');
    expect(hookEnv).toContain('PACHA_HOST=sechost');
    expect(hookEnv).not.toContain('PACHA_SSH_PASSPHRASE');
    // The callback worked, with the credentials as a Basic header.
    const basic = `Basic ${Buffer.from(`hookuser:${PASSWORD}`).toString('base64')}`;
    expect(cb.auth.length).toBeGreaterThanOrEqual(2); // the failed push, the rebuild
    expect(cb.auth.every((a) => a === basic)).toBe(true);
    expect(cb.bodies.some((b) => b.includes('push-failed'))).toBe(true);

    // Search everything: outputs, the log files, the journal, state, the staging left behind.
    const texts: { where: string; text: string }[] = outputs.map((r, i) => ({ where: `run ${i}`, text: r.stdout + r.stderr }));
    for (const h of [src, dst]) {
      // The configuration and the key file hold the secrets by design; git objects are compressed.
      const skip = (rel: string) => rel === 'etc/pacha.conf' || rel === 'etc/pacha' || rel.includes('/objects/');
      for (const rel of filesUnder(h.root, skip)) texts.push({ where: `${h.root}/${rel}`, text: fs.readFileSync(path.join(h.root, rel), 'latin1') });
    }
    expect(texts.some((t) => t.where.endsWith('var/log/pacha.log'))).toBe(true);
    expect(texts.some((t) => t.where.endsWith('hooks/sechost.json'))).toBe(true);
    expect(texts.map((t) => t.text).join('\n')).toContain('[pre 10-env] PACHA_HOST=sechost');
    const secrets = [PASSWORD, encodeURIComponent(PASSWORD), PASSPHRASE, ...keyBody];
    const leaks = texts.flatMap((t) => secrets.filter((s) => t.text.includes(s)).map((s) => `${t.where}: ${s.slice(0, 12)}...`));
    expect(leaks).toEqual([]);
    // The URL is still shown, masked.
    expect(outputs.map((r) => r.stdout).join('\n')).toContain('http://***@127.0.0.1:');
  });
});
