import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { loadConfig } from '@pacha/shared/config';
import { resolveAuth } from '@pacha/shared/transport/ssh-auth';
import { makeTestHost, type TestHost } from '@pacha/test-support/host';

// check-config: exit 0 when the file is valid (warnings are said to be warnings), 1 when a
// value is invalid (said to be an error); a private key others can read is an error here and
// is refused, with the fix, wherever pacha would use it.

let host: TestHost | undefined;
afterEach(() => {
  host?.cleanup();
  host = undefined;
});

function writeKey(h: TestHost, mode: number): string {
  fs.mkdirSync(h.p('/etc/pacha'), { recursive: true });
  const key = h.p('/etc/pacha/id_ed25519');
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', key]);
  fs.chmodSync(key, mode);
  return key;
}

describe('pacha check-config', () => {
  it('valid with warnings only: exit 0, each marked as a warning', async () => {
    host = makeTestHost({ config: { 'pacha.colour': 'blue', 'pacha.host': 'master.example.com', 'pacha.watch': '/nowhere' } });
    const r = await host.pacha(['check-config']);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).toMatch(/# valid, with 3 warning\(s\):/);
    expect(r.stdout).toMatch(/# warning: .*unknown key pacha.colour/);
    expect(r.stdout).toMatch(/# warning: pacha.ssh.known_hosts: .* does not exist/);
    expect(r.stdout).toMatch(/# warning: pacha.watch: \/nowhere does not exist/);
    const j = await host.pacha(['check-config', '--json']);
    expect(j.code).toBe(0);
    expect(JSON.parse(j.stdout)).toMatchObject({ valid: true, errors: [] });
    expect(JSON.parse(j.stdout).warnings).toHaveLength(3);
  });

  it('an invalid value: exit 1, said to be an error, with the key and what is accepted', async () => {
    host = makeTestHost({ config: { 'pacha.ssh.port': 'twenty-two' } });
    const r = await host.pacha(['check-config']);
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/# the configuration is invalid:\n# error: .*pacha.conf:3: pacha.ssh.port: "twenty-two" is not a port \(accepted: an integer 1-65535\)/);
    const j = await host.pacha(['check-config', '--json']);
    expect(j.code).toBe(1);
    expect(JSON.parse(j.stdout)).toMatchObject({ valid: false });
  });

  it('a key that cannot be read is not reported as missing', async () => {
    host = makeTestHost({ config: { 'pacha.host': 'file://', 'pacha.ssh.key': '/etc/pacha/loop' } });
    fs.mkdirSync(host.p('/etc/pacha'), { recursive: true });
    fs.symlinkSync('loop', host.p('/etc/pacha/loop')); // ELOOP, as root can provoke it
    const r = await host.pacha(['check-config']);
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/# error: pacha.ssh.key: .*\/etc\/pacha\/loop cannot be read: ELOOP/);
    expect(r.stdout).not.toMatch(/does not exist/);
  });

  it('a private key readable by group or others: an error with the fix; pacha refuses to use it', async () => {
    host = makeTestHost({ config: { 'pacha.host': 'file://', 'pacha.ssh.key': '/etc/pacha/id_ed25519' } });
    const key = writeKey(host, 0o644);
    const r = await host.pacha(['check-config']);
    expect(r.code).toBe(1);
    expect(r.stdout).toContain(`# error: pacha.ssh.key: ${key} has mode 0644: group or others can access it, so it is refused as OpenSSH does; fix: chmod 600 ${key}`);
    const config = loadConfig({ env: host.env });
    expect(() => resolveAuth(config, { ...host!.env, SSH_AUTH_SOCK: '' })).toThrow(`fix: chmod 600 ${key}`);
    fs.chmodSync(key, 0o640);
    expect(() => resolveAuth(config, { ...host!.env, SSH_AUTH_SOCK: '' })).toThrow(/mode 0640/);
    fs.chmodSync(key, 0o600);
    expect(resolveAuth(config, { ...host.env, SSH_AUTH_SOCK: '' }).source).toBe(`key ${key}`);
    expect((await host.pacha(['check-config'])).code).toBe(0);
  });
});
