import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '@pacha/shared/config';
import { silentLogger } from '@pacha/shared/log';
import { openTransport } from '@pacha/shared/transport/open';
import { HostKeyError } from '@pacha/shared/errors';
import { embeddedTarget, opensshTarget, startMaster, writeAgentConfig, type MasterHandle, type SftpTarget } from '@pacha/test-support/master';
import { startSshd, type SshdHandle } from '@pacha/test-support/sshd';
import { makeTestHost, type TestHost } from '@pacha/test-support/host';

// Host keys are always verified: unknown and wrong keys are refused with the fingerprint shown;
// `pacha trust-master` records the key, after which the agent connects. Against both masters.

const OTHER_KEY = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEz8cJ3l2pYbE0m4w1rG7W0cS5o3x0Kq2m7fQ1bq9y2T';

async function connect(h: TestHost) {
  const config = loadConfig({ env: h.env });
  return openTransport(config, silentLogger, { env: { ...h.env }, connectTimeoutMs: 10_000 });
}

function sshKeygenFingerprint(pubLine: string, dir: string): string {
  const f = `${dir}/hostkey.pub`;
  fs.writeFileSync(f, pubLine + '\n');
  return execFileSync('ssh-keygen', ['-l', '-E', 'sha256', '-f', f], { encoding: 'utf8' }).split(/\s+/)[1];
}

function hostKeySuite(name: string, start: () => Promise<{ target: SftpTarget; stop(): Promise<void> } | null>) {
  describe(`host key verification: ${name}`, () => {
    let srv: { target: SftpTarget; stop(): Promise<void> } | null;
    let h: TestHost;
    beforeAll(async () => {
      srv = await start();
      h = makeTestHost({ name: 'agent1' });
    });
    afterAll(async () => {
      await srv?.stop();
      h?.cleanup();
    });

    it('refuses an unknown key, showing its fingerprint and how to trust it', async (ctx) => {
      if (!srv) ctx.skip();
      writeAgentConfig(h, srv!.target, {}, { trust: false });
      const err = await connect(h).then(() => null, (e) => e);
      expect(err).toBeInstanceOf(HostKeyError);
      const expected = sshKeygenFingerprint(srv!.target.knownHostsLine.split(' ').slice(1).join(' '), h.root);
      expect(err.message).toContain(expected);
      expect(err.message).toMatch(/not known/);
      expect(err.hint).toContain('pacha trust-master');
    });

    it('refuses a changed key (another key recorded for the same [host]:port)', async (ctx) => {
      if (!srv) ctx.skip();
      writeAgentConfig(h, srv!.target, {}, { trust: false });
      fs.writeFileSync(h.p('/etc/pacha/known_hosts'), `[127.0.0.1]:${srv!.target.port} ${OTHER_KEY}\n`);
      const err = await connect(h).then(() => null, (e) => e);
      expect(err).toBeInstanceOf(HostKeyError);
      expect(err.message).toMatch(/HOST KEY CHANGED/);
      // trust-master will not add a second key next to the recorded one.
      const r = await h.pacha(['trust-master', '--yes']);
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(/records another key/);
      expect(fs.readFileSync(h.p('/etc/pacha/known_hosts'), 'utf8').trim().split('\n')).toHaveLength(1);
    });

    it('trust-master without a terminal and without --yes records nothing', async (ctx) => {
      if (!srv) ctx.skip();
      writeAgentConfig(h, srv!.target, {}, { trust: false });
      const r = await h.pacha(['trust-master']);
      expect(r.code).toBe(2);
      expect(r.stderr).toMatch(/SHA256:[A-Za-z0-9+/]{43}/);
      expect(r.stderr).toMatch(/--yes/);
      expect(fs.readFileSync(h.p('/etc/pacha/known_hosts'), 'utf8')).toBe('');
    });

    it('trust-master --yes records the key; the agent then connects', async (ctx) => {
      if (!srv) ctx.skip();
      writeAgentConfig(h, srv!.target, {}, { trust: false });
      const r = await h.pacha(['trust-master', '--yes', '--json']);
      expect(r.code, r.stderr).toBe(0);
      const out = JSON.parse(r.stdout);
      expect(out).toMatchObject({ recorded: true, status: 'unknown', keyType: 'ssh-ed25519', master: `[127.0.0.1]:${srv!.target.port}` });
      const line = fs.readFileSync(h.p('/etc/pacha/known_hosts'), 'utf8').trim();
      expect(line).toBe(srv!.target.knownHostsLine);
      const t = await connect(h);
      expect(await t.stat('/')).not.toBeNull();
      await t.close();
      // Running it again changes nothing.
      const again = await h.pacha(['trust-master']);
      expect(again.code).toBe(0);
      expect(again.stdout).toMatch(/already trusted/);
    });
  });
}

hostKeySuite('embedded master', async () => {
  const m: MasterHandle = await startMaster();
  return { target: embeddedTarget(m), stop: () => m.stop() };
});

hostKeySuite('OpenSSH sshd', async () => {
  const s: SshdHandle | null = await startSshd({ what: 'host key tests against OpenSSH' });
  if (!s) return null;
  return { target: opensshTarget(s), stop: () => s.stop() };
});

describe('trust-master on a terminal', () => {
  // `script` gives the command a pseudo-terminal, as an operator's shell would.
  const hasScript = fs.existsSync('/usr/bin/script');
  it.skipIf(!hasScript)('asks "Record this key ...? [y/N]": n records nothing, y records the key', async () => {
    const { spawn } = await import('node:child_process');
    const { PACHA_BIN } = await import('@pacha/test-support/cli');
    const m = await startMaster();
    const h = makeTestHost({ name: 'tty1' });
    try {
      writeAgentConfig(h, embeddedTarget(m), {}, { trust: false });
      const ask = (answer: string) =>
        new Promise<{ code: number | null; out: string }>((resolve) => {
          const c = spawn('script', ['-qec', `${process.execPath} ${PACHA_BIN} trust-master`, '/dev/null'], { env: { ...process.env, ...h.env } });
          let out = '';
          let answered = false;
          c.stdout.on('data', (d) => {
            out += d;
            if (!answered && /\[y\/N\]/.test(out)) {
              answered = true;
              c.stdin.write(answer + '\n');
            }
          });
          c.on('close', (code) => resolve({ code, out }));
        });
      const no = await ask('n');
      expect(no.out).toMatch(/Record this key in .*known_hosts\? \[y\/N\]/);
      expect(no.out).toMatch(/SHA256:/);
      expect(no.code).toBe(1);
      expect(fs.readFileSync(h.p('/etc/pacha/known_hosts'), 'utf8')).toBe('');
      const yes = await ask('y');
      expect(yes.code).toBe(0);
      expect(fs.readFileSync(h.p('/etc/pacha/known_hosts'), 'utf8').trim()).toBe(m.knownHostsLine);
    } finally {
      await m.stop();
      h.cleanup();
    }
  });
});
