import crypto from 'node:crypto';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startMaster, embeddedTarget, opensshTarget, writeAgentConfig, type MasterHandle } from '@pacha/test-support/master';
import { startSshd, type SshdHandle } from '@pacha/test-support/sshd';
import { runNode } from '@pacha/test-support/cli';
import { CRASH_PUSH } from '@pacha/test-support/crash-push';
import { makeAgentHost, fsckOk, refOf, commitCount, type AgentHost } from './push-helpers.ts';

// Crash consistency of `pacha push`: the push is killed with SIGKILL at many points (its transport
// wrapped in a faulty one by test-support/crash-push.ts), and the connection is cut
// mid-upload. Every time the master's repository is valid (native git fsck) at the old or the
// new snapshot, and the next push completes.

const NAMED = [
  'connected', 'locked', 'cleared', 'repo-ready', 'negotiated', 'packed', 'pack-uploaded', 'idx-uploaded',
  'upload-checked', 'pack-renamed', 'idx-renamed', 'ref-checked', 'ref-written', 'unlocked',
];
// A push makes about 20 transport calls: die before some, and while others are in flight.
const CALLS = ['call:2', 'call:5', 'call:7', 'call:9', 'call:12', 'call:15', 'call:18', 'during:7', 'during:8', 'during:13', 'during:16', 'during:19'];

const hosts: AgentHost[] = [];
let master: MasterHandle | undefined;
let sshd: SshdHandle | null = null;
afterAll(async () => {
  await master?.stop();
  await sshd?.stop();
  for (const h of hosts) h.cleanup();
});

/** `pacha push` killed at `point` (see CRASH_POINTS in test-support/crash-push.ts). */
const crashPush = (h: AgentHost, point: string) => runNode(CRASH_PUSH, [point], { env: h.env });

async function crashLoop(h: AgentHost, repo: string, points: string[]): Promise<number> {
  let killed = 0;
  for (const [i, point] of points.entries()) {
    const old = refOf(repo);
    const next = h.snapshot(30, i + 1);
    const crashed = await crashPush(h, point);
    if (crashed.code === 128) killed++;
    else expect(crashed.code, `${point}: ${crashed.stderr}`).toBe(0); // the point lies past the end of this push
    const now = refOf(repo);
    expect([old, next], `after a crash at ${point}`).toContain(now);
    if (now !== null) fsckOk(repo);
    const again = await h.pacha(['push']);
    expect(again.code, `push after a crash at ${point}: ${again.stderr}`).toBe(0);
    expect(refOf(repo)).toBe(next);
    fsckOk(repo);
    expect(fs.readdirSync(path.join(repo, 'objects/pack')).filter((n) => n.startsWith('tmp_')), `leftovers of ${point}`).toEqual([]);
  }
  return killed;
}

describe('pacha push killed with SIGKILL', () => {
  it('leaves a local-folder master at the old or new snapshot at 26 points, and the next push completes', async () => {
    const h = makeAgentHost('crash-local');
    hosts.push(h);
    const hostsPath = h.p('/master/hosts');
    h.writeConfig({ 'pacha.host': 'file://', 'pacha.hosts.path': hostsPath });
    const repo = path.join(hostsPath, h.name, 'repo');
    h.snapshot(30, 0);
    expect((await h.pacha(['push'])).code).toBe(0);
    const killed = await crashLoop(h, repo, [...NAMED, ...CALLS]);
    console.log(`local folder: the push was killed at ${killed} of ${NAMED.length + CALLS.length} points`);
    expect(killed).toBeGreaterThanOrEqual(20);
    expect(commitCount(repo)).toBe(NAMED.length + CALLS.length + 1);
  }, 180_000);

  it('survives crashes during the very first push (no repository yet)', async () => {
    for (const point of ['call:1', 'call:3', 'repo-ready', 'during:6', 'pack-renamed', 'ref-written']) {
      const h = makeAgentHost(`crash-first-${point.replace(':', '')}`);
      hosts.push(h);
      const hostsPath = h.p('/master/hosts');
      h.writeConfig({ 'pacha.host': 'file://', 'pacha.hosts.path': hostsPath });
      const repo = path.join(hostsPath, h.name, 'repo');
      const head = h.snapshot(10, 0);
      const r = await crashPush(h, point);
      expect(r.code, point).toBe(128);
      expect([null, head]).toContain(refOf(repo));
      const again = await h.pacha(['push']);
      expect(again.code, again.stderr).toBe(0);
      expect(refOf(repo)).toBe(head);
      fsckOk(repo);
    }
  }, 120_000);

  it('leaves the embedded master valid at 10 points (append-only rules and all)', async () => {
    master ??= await startMaster();
    const h = makeAgentHost('crash-embedded');
    hosts.push(h);
    const t = embeddedTarget(master);
    writeAgentConfig(h, t);
    const repo = path.join(t.hostDir(h.name), 'repo');
    h.snapshot(30, 0);
    expect((await h.pacha(['push'])).code).toBe(0);
    const killed = await crashLoop(h, repo, ['locked', 'negotiated', 'pack-uploaded', 'pack-renamed', 'idx-renamed', 'ref-written', 'call:9', 'during:7', 'during:12', 'during:15']);
    expect(killed).toBeGreaterThanOrEqual(9);
  }, 180_000);
});

/** Wait until a push is mid-upload: a temporary pack on the master, not yet complete. */
async function midUpload(packDir: string, timeoutMs = 20_000): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    try {
      for (const n of fs.readdirSync(packDir)) {
        if (!n.startsWith('tmp_pack_')) continue;
        const size = fs.statSync(path.join(packDir, n)).size;
        if (size > 0) return size;
      }
    } catch {
      // not created yet
    }
    await new Promise((r) => setTimeout(r, 2));
  }
  throw new Error(`no upload seen in ${packDir}`);
}

const bigFile = () => ({ path: '/etc/big/blob.bin', type: 'file' as const, content: crypto.randomBytes(24 * 1024 * 1024) });

describe('pacha push when the connection is cut mid-upload', () => {
  it('embedded master killed mid-upload: valid at the old snapshot; snapshots taken while it is down all arrive after a restart', async () => {
    const m = await startMaster();
    const dir = m.dir;
    const h = makeAgentHost('cut-embedded');
    hosts.push(h);
    writeAgentConfig(h, embeddedTarget(m));
    const repo = path.join(m.hostDir(h.name), 'repo');
    const old = h.snapshot(5, 0);
    expect((await h.pacha(['push'])).code).toBe(0);
    const next = h.snapshot(5, 1, [bigFile()]);
    const pushing = h.pacha(['push']);
    const seen = await midUpload(path.join(repo, 'objects/pack'));
    process.kill(m.pid(), 'SIGKILL');
    const r = await pushing;
    expect(r.code).toBe(1);
    expect(seen).toBeLessThan(24 * 1024 * 1024);
    expect(refOf(repo)).toBe(old);
    fsckOk(repo);
    // More snapshots while the master is down: none may be lost.
    h.snapshot(5, 2);
    const latest = h.snapshot(5, 3);
    const down = await h.pacha(['push']);
    expect(down.code).toBe(1);
    const status = JSON.parse(fs.readFileSync(h.p('/var/lib/pacha/status.json'), 'utf8'));
    expect(status).toMatchObject({ pending: 3, lastError: { operation: 'push' } });
    const restarted = await startMaster({ dir });
    master ??= restarted;
    try {
      writeAgentConfig(h, embeddedTarget(restarted));
      const again = await h.pacha(['push']);
      expect(again.code, again.stderr).toBe(0);
      expect(refOf(repo)).toBe(latest);
      expect(commitCount(repo)).toBe(4);
      expect(execFileSync('git', ['--git-dir', repo, 'rev-list', 'main'], { encoding: 'utf8' })).toContain(next);
      fsckOk(repo);
      expect(fs.readdirSync(path.join(repo, 'objects/pack')).filter((n) => n.startsWith('tmp_'))).toEqual([]);
    } finally {
      if (master !== restarted) await restarted.stop();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }, 120_000);

  it('OpenSSH session killed mid-upload: the push retries on a new connection and completes', async (ctx) => {
    sshd = await startSshd({ what: 'the OpenSSH cut-connection test' });
    if (!sshd) ctx.skip();
    const s = sshd!;
    const h = makeAgentHost('cut-openssh');
    hosts.push(h);
    const t = opensshTarget(s);
    writeAgentConfig(h, t);
    const repo = path.join(t.hostDir(h.name), 'repo');
    h.snapshot(5, 0);
    expect((await h.pacha(['push'])).code).toBe(0);
    const next = h.snapshot(5, 1, [bigFile()]);
    const pushing = h.pacha(['push']);
    await midUpload(path.join(repo, 'objects/pack'));
    // The per-connection sshd processes are the listener's children: cut them all.
    const sessions = execFileSync('pgrep', ['-P', String(s.pid())], { encoding: 'utf8' }).trim().split('\n').filter(Boolean);
    expect(sessions.length).toBeGreaterThan(0);
    for (const pid of sessions) process.kill(Number(pid), 'SIGKILL');
    const r = await pushing;
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/retry 1\//);
    expect(refOf(repo)).toBe(next);
    fsckOk(repo);
  }, 120_000);
});
