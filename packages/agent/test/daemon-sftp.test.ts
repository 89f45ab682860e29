import fs from 'node:fs';
import net from 'node:net';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { makeTestHost, type TestHost } from '@pacha/test-support/host';
import { embeddedTarget, opensshTarget, startMaster, writeAgentConfig, type MasterHandle, type SftpTarget } from '@pacha/test-support/master';
import { startSshd, type SshdHandle } from '@pacha/test-support/sshd';
import { git, killAll, startDaemon, tryGit, until } from './daemon-harness.ts';

// The daemon against real SFTP masters: the embedded `pacha-master serve` and OpenSSH's sshd
// (mandatory in CI, skipped loudly elsewhere when sshd is missing). The agent reaches the
// master through a small TCP relay so that the test can take the master away at the network
// level (connections refused and cut) and bring it back on the same port.

class Relay {
  private server: net.Server | undefined;
  private readonly sockets = new Set<net.Socket>();
  port = 0;
  private readonly target: number;
  constructor(target: number) {
    this.target = target;
  }

  async up(): Promise<void> {
    this.server = net.createServer((client) => {
      const upstream = net.connect(this.target, '127.0.0.1');
      for (const s of [client, upstream]) {
        this.sockets.add(s);
        s.on('close', () => this.sockets.delete(s));
        s.on('error', () => s.destroy());
      }
      client.pipe(upstream);
      upstream.pipe(client);
      client.on('close', () => upstream.destroy());
      upstream.on('close', () => client.destroy());
    });
    await new Promise<void>((r) => this.server!.listen(this.port, '127.0.0.1', r));
    this.port = (this.server.address() as net.AddressInfo).port;
  }

  async down(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((r) => (this.server ? this.server.close(() => r()) : r()));
    this.server = undefined;
  }
}

let sshd: SshdHandle | null = null;
let master: MasterHandle | undefined;
beforeAll(async () => {
  sshd = await startSshd({ what: 'the daemon tests against OpenSSH' });
  master = await startMaster();
});
afterAll(async () => {
  killAll();
  await sshd?.stop();
  await master?.stop();
});

const targets: { name: string; get: () => SftpTarget | null }[] = [
  { name: 'embedded master', get: () => (master ? embeddedTarget(master) : null) },
  { name: 'OpenSSH sshd', get: () => (sshd ? opensshTarget(sshd) : null) },
];

let host: TestHost | undefined;
let relay: Relay | undefined;
afterEach(async () => {
  killAll();
  await relay?.down();
  host?.cleanup();
  host = undefined;
  relay = undefined;
});

describe.each(targets)('pacha daemon with the $name', ({ get }) => {
  it('a single edit reaches the master; no key material or passphrase in the logs', async (ctx) => {
    const t = get();
    if (!t) return ctx.skip();
    host = makeTestHost({ name: `d-${t.kind}-edit` });
    writeAgentConfig(host, t, { 'pacha.frequency': 0, 'pacha.watch': '/etc/app', 'pacha.log.path': '/var/log/pacha.log' });
    fs.mkdirSync(host.p('/etc/app'), { recursive: true });
    fs.mkdirSync(host.p('/var/log'), { recursive: true });
    fs.writeFileSync(host.p('/etc/app/a.conf'), 'one\n');
    const repo = `${t.hostDir(host.name)}/repo`;
    const d = startDaemon(host, { args: ['-v'], env: { PACHA_SSH_PASSPHRASE: 'correct-horse-battery' } });
    await until('first snapshot on the master', () => tryGit(repo, ['show', 'refs/heads/main:etc/app/a.conf']) === 'one', 30_000);
    fs.writeFileSync(host.p('/etc/app/a.conf'), 'two\n');
    await until('the edit on the master', () => tryGit(repo, ['show', 'refs/heads/main:etc/app/a.conf']) === 'two', 30_000).catch((e) => {
      throw new Error(`${(e as Error).message}; daemon log:\n${d.stderr()}`);
    });
    git(repo, ['fsck', '--full', '--strict']);
    if (t.kind === 'embedded') {
      // Both pushes went over the one connection the daemon keeps between close pushes.
      // The ref is in place a moment before the master logs the push: wait for both lines.
      const accepted = () => [...master!.output().matchAll(new RegExp(`push accepted: host=${host!.name} .* conn=(\\S+)`, 'g'))].map((m) => m[1]);
      await until('both pushes logged by the master', () => accepted().length >= 2, 30_000);
      const conns = accepted();
      expect(conns).toHaveLength(2);
      expect(new Set(conns).size).toBe(1);
    }
    expect((await d.stop()).code).toBe(0);
    const key = fs.readFileSync(host.p('/etc/pacha/id_ed25519'), 'utf8');
    const keyBody = key.split('\n').filter((l) => l && !l.startsWith('-----'));
    const logFile = fs.readFileSync(host.p('/var/log/pacha.log'), 'utf8');
    expect(logFile).toMatch(/ info pushed 1 snapshot/);
    for (const text of [d.stderr(), logFile]) {
      for (const line of keyBody) expect(text).not.toContain(line);
      expect(text).not.toContain('correct-horse-battery');
    }
  });

  it('master away (connections refused and cut) then back: every snapshot arrives', async (ctx) => {
    const t = get();
    if (!t) return ctx.skip();
    host = makeTestHost({ name: `d-${t.kind}-away` });
    relay = new Relay(t.port);
    await relay.up();
    writeAgentConfig(host, { ...t, port: relay.port, knownHostsLine: t.knownHostsLine.replace(/^\[127\.0\.0\.1\]:\d+/, `[127.0.0.1]:${relay.port}`) }, {
      'pacha.frequency': 0,
      'pacha.watch': '/etc/app',
    });
    fs.mkdirSync(host.p('/etc/app'), { recursive: true });
    fs.writeFileSync(host.p('/etc/app/a.conf'), 'v0\n');
    const repo = `${t.hostDir(host.name)}/repo`;
    const local = host.p('/var/lib/pacha/repo');
    const d = startDaemon(host, { env: { PACHA_RETRY_INITIAL_MS: '300', PACHA_RETRY_MAX_MS: '1500' } });
    await until('first snapshot on the master', () => tryGit(repo, ['show', 'refs/heads/main:etc/app/a.conf']) === 'v0', 30_000);
    await relay.down();
    for (let i = 1; i <= 3; i++) {
      fs.writeFileSync(host.p('/etc/app/a.conf'), `v${i}\n`);
      await until(`local snapshot ${i}`, () => Number(tryGit(local, ['rev-list', '--count', 'refs/heads/main']) ?? 0) === i + 1, 30_000);
    }
    await d.waitLog(/^warning: push failed: .*retry in/, 30_000);
    expect(tryGit(repo, ['show', 'refs/heads/main:etc/app/a.conf'])).toBe('v0');
    await relay.up();
    await until('every snapshot on the master', () => tryGit(repo, ['rev-parse', 'refs/heads/main']) === git(local, ['rev-parse', 'refs/heads/main']), 30_000);
    expect(git(repo, ['rev-list', '--count', 'refs/heads/main'])).toBe('4');
    expect(tryGit(repo, ['show', 'refs/heads/main:etc/app/a.conf'])).toBe('v3');
    git(repo, ['fsck', '--full', '--strict']);
    await d.waitLog(/^push recovered after/);
    expect((await d.stop()).code).toBe(0);
  });
});
