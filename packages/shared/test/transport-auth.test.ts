import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '@pacha/shared/config';
import { silentLogger } from '@pacha/shared/log';
import { openTransport } from '@pacha/shared/transport/open';
import { resolveAuth } from '@pacha/shared/transport/ssh-auth';
import { embeddedTarget, startMaster, writeAgentConfig, type MasterHandle } from '@pacha/test-support/master';
import { makeTestHost, type TestHost } from '@pacha/test-support/host';
import { AuthError } from '@pacha/shared/errors';

// Which key the agent logs in with, and the errors an operator sees when it cannot.

describe('ssh authentication', () => {
  let m: MasterHandle;
  let h: TestHost;
  beforeAll(async () => {
    m = await startMaster({ hosts: ['authhost'] });
    h = makeTestHost({ name: 'authhost' });
  });
  afterAll(async () => {
    await m.stop();
    h.cleanup();
  });
  const env = (extra: NodeJS.ProcessEnv = {}) => ({ ...h.env, SSH_AUTH_SOCK: '', ...extra });

  it('logs in with pacha.ssh.key', async () => {
    writeAgentConfig(h, embeddedTarget(m));
    const t = await openTransport(loadConfig({ env: env() }), silentLogger, { env: env() });
    expect((await t.list('/pacha/hosts/authhost')).map((e) => e.name).sort()).toEqual(['pacha_post', 'pacha_pre']);
    await t.close();
  });

  it('logs in through ssh-agent (SSH_AUTH_SOCK) when no key is configured', async () => {
    const keys = writeAgentConfig(h, embeddedTarget(m));
    const { 'pacha.ssh.key': _key, ...noKey } = keys;
    h.writeConfig(noKey);
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pacha-agent-'));
    const sock = path.join(dir, 'agent.sock');
    const agent = spawn('ssh-agent', ['-D', '-a', sock], { stdio: 'ignore' });
    try {
      for (let i = 0; i < 200 && !fs.existsSync(sock); i++) await new Promise((r) => setTimeout(r, 10));
      execFileSync('ssh-add', ['-q', h.p('/etc/pacha/id_ed25519')], { env: { ...process.env, SSH_AUTH_SOCK: sock }, stdio: 'ignore' });
      const e = env({ SSH_AUTH_SOCK: sock });
      const t = await openTransport(loadConfig({ env: e }), silentLogger, { env: e });
      expect((await t.list('/pacha/hosts/authhost')).map((x) => x.name).sort()).toEqual(['pacha_post', 'pacha_pre']);
      await t.close();
    } finally {
      agent.kill();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('falls back to ~/.ssh/id_ed25519 under the root dir when pacha.ssh.key is not set', async () => {
    const keys = writeAgentConfig(h, embeddedTarget(m));
    delete keys['pacha.ssh.key'];
    h.writeConfig(keys);
    fs.mkdirSync(h.p('/root/.ssh'), { recursive: true });
    fs.copyFileSync(m.keyFor('authhost'), h.p('/root/.ssh/id_ed25519'));
    const config = loadConfig({ env: env() });
    expect(resolveAuth(config, env()).source).toBe(`key ${h.p('/root/.ssh/id_ed25519')}`);
    const t = await openTransport(config, silentLogger, { env: env() });
    await t.close();
    fs.rmSync(h.p('/root/.ssh'), { recursive: true });
    expect(() => resolveAuth(config, env())).toThrow(/no SSH key.*id_ed25519.*id_ecdsa.*id_rsa/);
  });

  it('uses ssh-agent when SSH_AUTH_SOCK is set and no key is configured', () => {
    const keys = writeAgentConfig(h, embeddedTarget(m));
    delete keys['pacha.ssh.key'];
    h.writeConfig(keys);
    const config = loadConfig({ env: env() });
    expect(resolveAuth(config, env({ SSH_AUTH_SOCK: '/tmp/agent.sock' }))).toEqual({ agent: '/tmp/agent.sock', source: 'ssh-agent (/tmp/agent.sock)' });
  });

  it('an encrypted key without passphrase is a clear error; PACHA_SSH_PASSPHRASE unlocks it and is never shown', async () => {
    writeAgentConfig(h, embeddedTarget(m));
    const enc = h.p('/etc/pacha/id_ed25519');
    execFileSync('ssh-keygen', ['-p', '-q', '-N', 'sekrit-phrase', '-P', '', '-f', enc], { stdio: 'ignore' });
    const r = await h.pacha(['trust-master', '--yes'], { env: { SSH_AUTH_SOCK: '' } });
    expect(r.code).toBe(0); // trust-master needs no key
    const config = loadConfig({ env: env() });
    expect(() => resolveAuth(config, env())).toThrow(/is encrypted and no passphrase was given/);
    expect(() => resolveAuth(config, env({ PACHA_SSH_PASSPHRASE: 'wrong' }))).toThrow(/could not be decrypted/);
    try {
      resolveAuth(config, env({ PACHA_SSH_PASSPHRASE: 'wrong' }));
    } catch (e) {
      expect((e as Error).message).not.toContain('wrong');
    }
    const t = await openTransport(config, silentLogger, { env: env({ PACHA_SSH_PASSPHRASE: 'sekrit-phrase' }) });
    await t.close();
  });

  it('a key the master does not know is refused with a hint to authorise it', async () => {
    writeAgentConfig(h, embeddedTarget(m));
    fs.copyFileSync(m.keyFor('someoneelse'), h.p('/etc/pacha/id_ed25519'));
    const err = await openTransport(loadConfig({ env: env() }), silentLogger, { env: env() }).then(() => null, (e) => e);
    expect(err).toBeInstanceOf(AuthError); // not retried
    expect(err?.message).toMatch(/refused key/);
    expect(err?.hint).toMatch(/pacha-master authorize authhost/);
  });
});
