import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { silentLogger } from '@pacha/shared/log';
import { SftpTransport } from '@pacha/shared/transport/sftp';
import { runMaster } from '@pacha/test-support/cli';
import { generateKey } from '@pacha/test-support/sshd';
import { startMaster } from '@pacha/test-support/master';

// `pacha-master authorize HOST PUBKEY-FILE`: validates the host name and the key, keeps the key
// outside the host's folder, creates the host's folder, and works without a restart.

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'pacha-authorize-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));
const hostsPath = path.join(tmp, 'hosts');
const key = generateKey(path.join(tmp, 'web1_key'));
const authorize = (...args: string[]) => runMaster(['authorize', ...args, '--hosts-path', hostsPath]);

describe('pacha-master authorize', () => {
  it('records the key outside the host folder and creates the host folder', async () => {
    const r = await authorize('web1', `${key.file}.pub`);
    expect(r.code, r.stderr).toBe(0);
    const fp = execFileSync('ssh-keygen', ['-l', '-E', 'sha256', '-f', `${key.file}.pub`], { encoding: 'utf8' }).split(/\s+/)[1];
    expect(r.stdout).toContain(fp);
    const keysFile = path.join(tmp, 'keys', 'web1.pub');
    expect(fs.readFileSync(keysFile, 'utf8')).toContain(key.publicKey.split(' ')[1]);
    expect(fs.statSync(keysFile).mode & 0o777).toBe(0o600);
    expect(fs.readdirSync(path.join(hostsPath, 'web1')).sort()).toEqual(['pacha_post', 'pacha_pre']);
    const again = await authorize('web1', `${key.file}.pub`, '--json');
    expect(JSON.parse(again.stdout)).toMatchObject({ host: 'web1', added: false, fingerprint: fp });
    expect(fs.readFileSync(keysFile, 'utf8').trim().split('\n')).toHaveLength(1);
  });

  it('refuses bad host names, private keys and non-keys with exit code 2', async () => {
    for (const bad of ['../etc', '.hidden', 'a/b', '']) {
      const r = await authorize(bad, `${key.file}.pub`);
      expect(r.code, bad).toBe(2);
    }
    const priv = await authorize('web2', key.file);
    expect(priv.code).toBe(2);
    expect(priv.stderr).toMatch(/private key.*\.pub/);
    fs.writeFileSync(path.join(tmp, 'junk.pub'), 'hello world\n');
    const junk = await authorize('web2', path.join(tmp, 'junk.pub'));
    expect(junk.code).toBe(2);
    expect(junk.stderr).toMatch(/not an SSH public key/);
    const missing = await authorize('web2', path.join(tmp, 'nope.pub'));
    expect(missing.code).toBe(2);
    expect(fs.existsSync(path.join(hostsPath, 'web2'))).toBe(false);
  });

  it('a host authorised while the master runs can log in at once', async () => {
    const m = await startMaster();
    try {
      const k = generateKey(path.join(tmp, 'late_key'));
      const r = await runMaster(['authorize', 'late', `${k.file}.pub`, '--hosts-path', m.hostsPath, '--keys-dir', m.keysDir]);
      expect(r.code, r.stderr).toBe(0);
      const kh = path.join(tmp, 'kh');
      fs.writeFileSync(kh, m.knownHostsLine + '\n');
      const t = await SftpTransport.connect({ host: '127.0.0.1', port: m.port, user: 'late', auth: { privateKey: fs.readFileSync(k.file), source: 'k' }, knownHostsFile: kh, log: silentLogger });
      expect((await t.list('/pacha/hosts/late')).length).toBe(2);
      await t.close();
    } finally {
      await m.stop();
    }
  });
});
