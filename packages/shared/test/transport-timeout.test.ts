import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { silentLogger } from '@pacha/shared/log';
import { SftpTransport } from '@pacha/shared/transport/sftp';
import { startMaster } from '@pacha/test-support/master';
import { startSshd } from '@pacha/test-support/sshd';
import { ConnectionError } from '@pacha/shared/errors';

// A master that stops answering (SIGSTOP: the TCP connection stays open, nothing comes back)
// must fail the operation within its deadline instead of hanging the agent.

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'pacha-timeout-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

/** The process and all its descendants (sshd forks per connection). */
function processTree(pid: number): number[] {
  const parents = new Map<number, number[]>();
  for (const name of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${name}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      parents.set(ppid, [...(parents.get(ppid) ?? []), Number(name)]);
    } catch {
      // gone
    }
  }
  const out = [pid];
  for (let i = 0; i < out.length; i++) out.push(...(parents.get(out[i]) ?? []));
  return out;
}

function signalTree(pids: number[], sig: NodeJS.Signals) {
  for (const p of pids) {
    try {
      process.kill(p, sig);
    } catch {
      // gone
    }
  }
}

async function hangCase(connectArgs: { port: number; user: string; key: string; knownHostsLine: string; base: string }, serverPid: number) {
  const kh = path.join(tmp, `kh-${connectArgs.port}`);
  fs.writeFileSync(kh, connectArgs.knownHostsLine + '\n');
  const opts = {
    host: '127.0.0.1',
    port: connectArgs.port,
    user: connectArgs.user,
    auth: { privateKey: fs.readFileSync(connectArgs.key), source: 'test key' },
    knownHostsFile: kh,
    log: silentLogger,
    connectTimeoutMs: 1500,
    opTimeoutMs: 1500,
  };
  const t = await SftpTransport.connect(opts);
  await t.mkdirp(connectArgs.base);
  const stopped = processTree(serverPid);
  signalTree(stopped, 'SIGSTOP');
  try {
    const t0 = Date.now();
    const err = await t.writeFile(`${connectArgs.base}/x`, 'data').then(() => null, (e) => e as Error);
    const took = Date.now() - t0;
    // The deadline fires (and not before its time); the test's own timeout would catch a hang.
    expect(err?.message).toMatch(/timed out|stopped answering/);
    expect(err).toBeInstanceOf(ConnectionError); // retried by push
    expect(took).toBeGreaterThanOrEqual(1400);
    // The connection is dropped: later calls fail with the same error instead of waiting again.
    await expect(t.stat(connectArgs.base)).rejects.toThrow(/stopped answering/);
    await t.close();
    // A new connection to the stopped server fails within the connect deadline.
    await expect(SftpTransport.connect(opts)).rejects.toThrow(/timed out|cannot connect/i);
    await expect(SftpTransport.connect(opts)).rejects.toBeInstanceOf(ConnectionError);
  } finally {
    signalTree(stopped, 'SIGCONT');
  }
}

describe('no hang when the master stops answering', () => {
  it('embedded master', async () => {
    const m = await startMaster({ hosts: ['hang'] });
    try {
      await hangCase({ port: m.port, user: 'hang', key: m.keyFor('hang'), knownHostsLine: m.knownHostsLine, base: '/pacha/hosts/hang/repo' }, m.pid());
    } finally {
      await m.stop();
    }
  });

  it('OpenSSH sshd', async (ctx) => {
    const s = await startSshd({ what: 'the hang test against OpenSSH' });
    if (!s) ctx.skip();
    try {
      await hangCase({ port: s!.port, user: s!.user, key: s!.clientKeyFile, knownHostsLine: s!.knownHostsLine, base: `${s!.hostsPath}/hang` }, s!.pid());
    } finally {
      await s!.stop();
    }
  });
});
