import http from 'node:http';
import type { AddressInfo } from 'node:net';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startMaster, embeddedTarget, opensshTarget, writeAgentConfig, type MasterHandle, type SftpTarget } from '@pacha/test-support/master';
import { startSshd, type SshdHandle } from '@pacha/test-support/sshd';
import { runMaster } from '@pacha/test-support/cli';
import { makeAgentHost, fsckOk, refOf, commitCount, type AgentHost } from './push-helpers.ts';

// `pacha push` as an operator runs it, against the three masters: a local folder (file://), the
// embedded master (pacha-master serve) and a real OpenSSH sshd. After every push native git
// accepts the master's repository.

let master: MasterHandle;
let sshd: SshdHandle | null;
const hosts: AgentHost[] = [];

beforeAll(async () => {
  master = await startMaster();
  sshd = await startSshd({ what: 'pacha push against OpenSSH' });
});
afterAll(async () => {
  await master?.stop();
  await sshd?.stop();
  for (const h of hosts) h.cleanup();
});

interface Target {
  name: string;
  available: () => boolean;
  setup(h: AgentHost): string; // returns the master's repo folder of the host
}

const targets: Target[] = [
  {
    name: 'a local folder (file://)',
    available: () => true,
    setup(h) {
      const hostsPath = h.p('/master/hosts');
      h.writeConfig({ 'pacha.host': 'file://', 'pacha.hosts.path': hostsPath });
      return path.join(hostsPath, h.name, 'repo');
    },
  },
  {
    name: 'the embedded master',
    available: () => true,
    setup(h) {
      const t: SftpTarget = embeddedTarget(master);
      writeAgentConfig(h, t);
      return path.join(t.hostDir(h.name), 'repo');
    },
  },
  {
    name: 'OpenSSH sshd',
    available: () => sshd !== null,
    setup(h) {
      const t = opensshTarget(sshd!);
      writeAgentConfig(h, t);
      return path.join(t.hostDir(h.name), 'repo');
    },
  },
];

describe.each(targets)('pacha push to $name', (target) => {
  it('sends the snapshots, then nothing, then only the change; the master passes git fsck', async (ctx) => {
    if (!target.available()) ctx.skip();
    const h = makeAgentHost(`push-${target.name.split(' ')[1].replace(/[^a-z]/g, '')}`);
    hosts.push(h);
    const repo = target.setup(h);
    const first = h.snapshot(40, 0);
    const r1 = await h.pacha(['push']);
    expect(r1.code, r1.stderr).toBe(0);
    expect(r1.stderr).toMatch(/created .*\/repo on the master/);
    expect(r1.stdout).toMatch(/^pushed 1 snapshot\(s\): \d+ objects, \d+ bytes; master at [0-9a-f]{12}/);
    expect(refOf(repo)).toBe(first);
    fsckOk(repo);

    const r2 = await h.pacha(['push', '--json']);
    expect(r2.code, r2.stderr).toBe(0);
    expect(JSON.parse(r2.stdout)).toMatchObject({ upToDate: true, commits: 0, bytes: 0, remoteHead: first });

    h.snapshot(40, 1);
    const third = h.snapshot(40, 2);
    const r3 = await h.pacha(['push', '--json']);
    expect(r3.code, r3.stderr).toBe(0);
    const j3 = JSON.parse(r3.stdout);
    expect(j3).toMatchObject({ upToDate: false, commits: 2, remoteHead: third });
    expect(j3.objects).toBeLessThan(20); // two changed files' paths, not the 40-file tree again
    expect(refOf(repo)).toBe(third);
    expect(commitCount(repo)).toBe(3);
    fsckOk(repo);
    expect(fs.readdirSync(path.join(repo, 'objects/pack')).filter((n) => !/^pack-[0-9a-f]{40}\.(pack|idx)$/.test(n))).toEqual([]);
    expect(fs.existsSync(path.join(repo, 'pacha-push.lock'))).toBe(false);

    const status = JSON.parse(fs.readFileSync(h.p('/var/lib/pacha/status.json'), 'utf8'));
    expect(status).toMatchObject({ pending: 0, lastPush: { commit: third, commits: 2 } });
    const report = JSON.parse(fs.readFileSync(h.p('/var/lib/pacha/report.json'), 'utf8'));
    expect(Object.keys(report.push.phases).sort()).toEqual(['connect', 'negotiate', 'pack', 'ref', 'upload']);
  });
});

describe('pacha push of real snapshots', () => {
  it('pushes what `pacha snapshot` wrote, and pacha-master show reads it back', async () => {
    const h = makeAgentHost('push-real');
    hosts.push(h);
    fs.rmSync(h.p('/var/lib/pacha/repo'), { recursive: true, force: true }); // the engine creates its own
    const t = embeddedTarget(master);
    writeAgentConfig(h, t, { 'pacha.watch': '/srv/app' });
    fs.mkdirSync(h.p('/srv/app/conf.d'), { recursive: true });
    fs.writeFileSync(h.p('/srv/app/conf.d/main.conf'), 'listen 8080\n');
    fs.copyFileSync('/etc/passwd', h.p('/etc/passwd'));
    fs.copyFileSync('/etc/group', h.p('/etc/group'));
    const s1 = await h.pacha(['snapshot']);
    expect(s1.code, s1.stderr).toBe(0);
    const p1 = await h.pacha(['push']);
    expect(p1.code, p1.stderr).toBe(0);
    fs.writeFileSync(h.p('/srv/app/conf.d/main.conf'), 'listen 9090\n');
    expect((await h.pacha(['snapshot'])).code).toBe(0);
    const p2 = await h.pacha(['push', '--json']);
    expect(JSON.parse(p2.stdout).commits).toBe(1);
    const repo = path.join(t.hostDir(h.name), 'repo');
    fsckOk(repo);
    const shown = await runMaster(['show', h.name, '/srv/app/conf.d/main.conf', '--hosts-path', master.hostsPath]);
    expect(shown.stdout).toBe('listen 9090\n');
    const verified = await runMaster(['verify', h.name, '--hosts-path', master.hostsPath]);
    expect(verified.code, verified.stdout).toBe(0);
  });
});

describe('pacha push failures', () => {
  it('exits 1 naming the master when it is down, and records the failure', async () => {
    const h = makeAgentHost('push-down');
    hosts.push(h);
    // pacha.callback.url hears of the failed push.
    const posts: unknown[] = [];
    const hook = http.createServer((req, res) => {
      let body = '';
      req.on('data', (d) => (body += d));
      req.on('end', () => {
        posts.push(JSON.parse(body));
        res.end('ok');
      });
    });
    await new Promise<void>((r) => hook.listen(0, '127.0.0.1', r));
    const url = `http://127.0.0.1:${(hook.address() as AddressInfo).port}/pacha`;
    writeAgentConfig(h, embeddedTarget(master), { 'pacha.ssh.port': 1, 'pacha.callback.url': url });
    h.snapshot(3, 0);
    const r = await h.pacha(['push'], { env: { PACHA_SSH_TIMEOUT: '2' } });
    hook.close();
    expect(r.code).toBe(1);
    expect(posts).toEqual([expect.objectContaining({ host: h.name, event: 'push-failed', error: expect.stringMatching(/refused/i) })]);
    expect(r.stderr).toMatch(/error: .*(ECONNREFUSED|refused)/i);
    expect(r.stderr).toMatch(/retry 1\/4/);
    const status = JSON.parse(fs.readFileSync(h.p('/var/lib/pacha/status.json'), 'utf8'));
    expect(status.lastError).toMatchObject({ operation: 'push', message: expect.stringMatching(/refused/i) });
  }, 90_000);

  it('exits 2 when pacha.host is not set', async () => {
    const h = makeAgentHost('push-noconf');
    hosts.push(h);
    h.snapshot(1, 0);
    const r = await h.pacha(['push']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/pacha.host is not set/);
  });
});
