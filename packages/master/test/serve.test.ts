import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import ssh2 from 'ssh2';
import { afterAll, describe, expect, it } from 'vitest';
import { silentLogger } from '@pacha/shared/log';
import { SftpTransport } from '@pacha/shared/transport/sftp';
import { ConnectionError } from '@pacha/shared/errors';
import { generateEd25519 } from '@pacha/shared/transport/ed25519';
import { REPO_HEAD } from '@pacha/shared/git/repository';
import { startMaster, type MasterHandle } from '@pacha/test-support/master';

// pacha-master serve as a process: host key kept across restarts, and the limits that protect
// it (failed authentications, login grace, idle sessions, connection count).

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'pacha-serve-test-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

function connectAs(m: MasterHandle, host: string, keyHost = host, extra: { opTimeoutMs?: number } = {}) {
  const kh = path.join(tmp, `kh-${m.port}`);
  fs.writeFileSync(kh, m.knownHostsLine + '\n');
  return SftpTransport.connect({
    host: '127.0.0.1',
    port: m.port,
    user: host,
    auth: { privateKey: fs.readFileSync(m.keyFor(keyHost)), source: 'test key' },
    knownHostsFile: kh,
    log: silentLogger,
    connectTimeoutMs: 5000,
    ...extra,
  });
}

describe('pacha-master serve', () => {
  it('creates its ed25519 host key on first start (0600) and keeps it across restarts', async () => {
    const dir = fs.mkdtempSync(path.join(tmp, 'keep-'));
    const m1 = await startMaster({ dir });
    const line1 = m1.knownHostsLine.split(' ').slice(1).join(' ');
    expect(m1.output()).toMatch(/created host key/);
    expect(fs.statSync(m1.hostKeyFile).mode & 0o777).toBe(0o600);
    expect(line1).toMatch(/^ssh-ed25519 /);
    await m1.stop();
    const m2 = await startMaster({ dir });
    expect(m2.knownHostsLine.split(' ').slice(1).join(' ')).toBe(line1);
    expect(m2.output()).not.toMatch(/created host key/);
    await m2.stop();
  });

  it('a master killed in the middle of a copy-on-rename leaves its copy; the next start removes it when the host connects', async () => {
    const dir = fs.mkdtempSync(path.join(tmp, 'crash-'));
    const m1 = await startMaster({ dir, hosts: ['h'] });
    const repo = '/pacha/hosts/h/repo';
    const t1 = await connectAs(m1, 'h');
    await t1.mkdirp(repo);
    await t1.writeFile(`${repo}/.HEAD.tmp-crash`, REPO_HEAD);
    // strace kills the master at its first fsync: the one of the copy it made of the host's file.
    const log = path.join(dir, 'strace.log');
    const tracer = spawn('strace', ['-f', '-qq', '-e', 'trace=openat,fsync', '-e', 'inject=fsync:signal=SIGKILL', '-o', log, '-p', String(m1.pid())], { stdio: 'ignore' });
    // strace ends by itself once the master it killed is gone, maybe before the kill below:
    // its end is awaited from its start (an 'exit' listener added later would wait forever).
    const traced = new Promise((r) => tracer.once('exit', r));
    try {
      for (let i = 0; !(fs.existsSync(log) && fs.readFileSync(log, 'utf8').includes('/repo"')); i++) {
        expect(i).toBeLessThan(2000);
        await t1.list(repo);
      }
      await expect(t1.rename(`${repo}/.HEAD.tmp-crash`, `${repo}/HEAD`)).rejects.toThrow();
    } finally {
      // Not SIGINT: strace was seen to hang detaching from the master it killed in a syscall.
      // Its log is not read after this point.
      tracer.kill('SIGKILL');
      await traced;
      await t1.close().catch(() => undefined);
      await m1.stop();
    }
    const real = path.join(dir, 'hosts', 'h', 'repo');
    const left = () => fs.readdirSync(real).filter((n) => n.startsWith('.pacha-master-'));
    expect(left()).toHaveLength(1);
    expect(fs.existsSync(path.join(real, 'HEAD'))).toBe(false);
    const m2 = await startMaster({ dir });
    try {
      const t2 = await connectAs(m2, 'h');
      expect(left()).toEqual([]);
      await m2.waitForLog(/host=h: removed 1 copy\(ies\) an interrupted rename left/);
      // The host's own file is still there: the push is simply done again.
      await t2.rename(`${repo}/.HEAD.tmp-crash`, `${repo}/HEAD`);
      expect(fs.readFileSync(path.join(real, 'HEAD'), 'utf8')).toBe(REPO_HEAD);
      await t2.close();
    } finally {
      await m2.stop();
    }
  }, 60_000);

  it('logs in each host with its own key only; one log line per connection', async () => {
    const m = await startMaster({ hosts: ['h1', 'h2'] });
    try {
      const t = await connectAs(m, 'h1');
      expect((await t.list('/pacha/hosts')).map((e) => e.name)).toEqual(['h1']);
      await t.close();
      // h2's key does not log in as h1, nor does an unknown user.
      await expect(connectAs(m, 'h1', 'h2')).rejects.toThrow(/refused test key/);
      await expect(connectAs(m, 'nosuchhost', 'h1')).rejects.toThrow(/refused test key/);
      await expect(connectAs(m, '../h1', 'h1')).rejects.toThrow(/refused test key/);
      await m.waitForLog(/connection \d+ from 127\.0\.0\.1: host=h1, closed/);
      await m.waitForLog(/connection \d+ from 127\.0\.0\.1: user="nosuchhost" not authenticated/);
    } finally {
      await m.stop();
    }
  });

  it('refuses shells and commands: SFTP only', async () => {
    const m = await startMaster({ hosts: ['h1'] });
    try {
      const c = new ssh2.Client();
      await new Promise<void>((resolve, reject) => {
        c.on('ready', () => resolve()).on('error', reject);
        c.connect({ host: '127.0.0.1', port: m.port, username: 'h1', privateKey: fs.readFileSync(m.keyFor('h1')) });
      });
      const err = await new Promise<Error | null>((resolve) => {
        c.exec('id', (e, stream) => {
          if (e) return resolve(e);
          stream.on('close', (code: number | null) => resolve(code === 0 ? null : new Error(`exit ${code}`)));
          stream.resume();
        });
      });
      expect(err).not.toBeNull();
      c.end();
    } finally {
      await m.stop();
    }
  });

  it('closes a connection after --max-auth-tries failed authentications', async () => {
    const m = await startMaster({ hosts: ['h1'], args: ['--max-auth-tries', '3'] });
    try {
      const wrongKeys = Array.from({ length: 6 }, () => generateEd25519().private);
      let attempts = 0;
      const outcome = await new Promise<string>((resolve) => {
        const c = new ssh2.Client();
        c.on('ready', () => resolve('ready'));
        c.on('error', (e) => resolve(`error: ${e.message}`));
        c.on('close', () => resolve('closed'));
        c.connect({
          host: '127.0.0.1',
          port: m.port,
          username: 'h1',
          authHandler: (_methods, _partial, next) => {
            if (attempts >= wrongKeys.length) return void c.end(); // out of keys (the check below then fails)
            next({ type: 'publickey', username: 'h1', key: wrongKeys[attempts++] });
          },
        });
      });
      expect(outcome).not.toBe('ready');
      expect(attempts).toBeLessThanOrEqual(4);
      await m.waitForLog(/too many failed authentications \(3\)/);
    } finally {
      await m.stop();
    }
  });

  it('refuses an address after --max-address-failures failed authentications', async () => {
    const m = await startMaster({ hosts: ['h1', 'h2'], args: ['--max-address-failures', '2'] });
    try {
      await expect(connectAs(m, 'h1', 'h2')).rejects.toThrow(/refused test key/);
      await expect(connectAs(m, 'h1', 'h2')).rejects.toThrow(/refused test key/);
      // Even the right key is refused from that address now.
      await expect(connectAs(m, 'h1')).rejects.toThrow();
      await m.waitForLog(/refused connection from 127\.0\.0\.1: too many failed authentications in the last 60s/);
    } finally {
      await m.stop();
    }
  });

  it('drops a connection that does not log in within --login-grace', async () => {
    const m = await startMaster({ args: ['--login-grace', '1'] });
    try {
      const t0 = Date.now();
      await new Promise<void>((resolve) => {
        const s = net.connect(m.port, '127.0.0.1');
        s.on('data', () => {}); // read the banner, send nothing
        s.on('close', () => resolve());
        s.on('error', () => {});
      });
      expect(Date.now() - t0).toBeGreaterThanOrEqual(900); // not before the grace time
      await m.waitForLog(/no SSH handshake within 1s/);
    } finally {
      await m.stop();
    }
  });

  it('closes an idle session after --idle-timeout', async () => {
    const m = await startMaster({ hosts: ['h1'], args: ['--idle-timeout', '1'] });
    try {
      const t = await connectAs(m, 'h1');
      await t.stat('/pacha/hosts/h1');
      await m.waitForLog(/host=h1, closed: idle timeout/);
      await expect(t.stat('/pacha/hosts/h1')).rejects.toBeInstanceOf(ConnectionError);
      await t.close();
    } finally {
      await m.stop();
    }
  });

  it('refuses connections above --max-connections, and logs it', async () => {
    const m = await startMaster({ hosts: ['h1'], args: ['--max-connections', '2'] });
    try {
      const open = [await connectAs(m, 'h1'), await connectAs(m, 'h1')];
      await expect(connectAs(m, 'h1')).rejects.toThrow();
      await m.waitForLog(/refused connection from 127\.0\.0\.1: 2 connections open \(limit 2/);
      await open[0].close();
      await m.waitForLog(/host=h1, closed after/);
      const again = await connectAs(m, 'h1');
      await again.close();
      await open[1].close();
    } finally {
      await m.stop();
    }
  });
});
