import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { makeTestHost, type TestHost } from '@pacha/test-support/host';
import { git, killAll, startDaemon, tryGit, until } from './daemon-harness.ts';

// `pacha status` against a real daemon process, a stopped one, a stale lock and a broken state.

let host: TestHost;
let masterDir: string | undefined;
afterEach(() => {
  killAll();
  host?.cleanup();
  if (masterDir) fs.rmSync(masterDir, { recursive: true, force: true });
  masterDir = undefined;
});

describe('pacha status', () => {
  it('reports a daemon that is not running (exit 0), with a stale lock named', async () => {
    host = makeTestHost({ config: { 'pacha.watch': '/etc/app' } });
    let r = await host.pacha(['status']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^daemon: +not running/m);
    expect(r.stdout).toMatch(/^watched: +\/etc\/app$/m);
    expect(r.stdout).toMatch(/^last snapshot: +none yet$/m);
    expect(r.stdout).toMatch(/^pending: +0 snapshots not on the master$/m);
    fs.mkdirSync(host.p('/var/lib/pacha'), { recursive: true });
    fs.writeFileSync(host.p('/var/lib/pacha/pacha.pid'), '4194999 daemon\n');
    r = await host.pacha(['status', '--json']);
    expect(r.code).toBe(0);
    const v = JSON.parse(r.stdout);
    expect(v.daemon).toEqual({ running: false, staleLockPid: 4194999 });
    expect(v.watched).toEqual(['/etc/app']);
    expect(v.pending).toEqual({ count: 0, atLeast: false, head: null });
  });

  it('exits 1 naming the file when the state cannot be read', async () => {
    host = makeTestHost();
    fs.mkdirSync(host.p('/var/lib/pacha'), { recursive: true });
    fs.writeFileSync(host.p('/var/lib/pacha/status.json'), '{ not json');
    const r = await host.pacha(['status']);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('status.json');
  });

  it('shows a running daemon: pid, heartbeat, last snapshot, last push, nothing pending', async () => {
    masterDir = fs.mkdtempSync(path.join(os.tmpdir(), 'pacha-master-'));
    host = makeTestHost({ config: { 'pacha.host': 'file://', 'pacha.hosts.path': masterDir, 'pacha.frequency': 0, 'pacha.watch': '/etc/app' } });
    fs.mkdirSync(host.p('/etc/app'), { recursive: true });
    fs.writeFileSync(host.p('/etc/app/a.conf'), 'a\n');
    const d = startDaemon(host);
    const masterRepo = path.join(masterDir, host.name, 'repo');
    await until('first push', () => tryGit(masterRepo, ['rev-parse', 'refs/heads/main']));
    await d.waitLog(/^pushed 1 snapshot/);
    const head = git(host.p('/var/lib/pacha/repo'), ['rev-parse', 'refs/heads/main']);
    const r = await host.pacha(['status', '--json']);
    expect(r.code).toBe(0);
    const v = JSON.parse(r.stdout);
    expect(v.daemon.running).toBe(true);
    expect(v.daemon.pid).toBe(d.pid);
    expect(v.daemon.state).toBe('idle');
    expect(v.daemon.heartbeatAgeSeconds).toBeLessThan(10);
    expect(v.daemon.heartbeatLate).toBe(false);
    expect(v.watched).toEqual(['/etc/app']);
    expect(v.lastSnapshot.commit).toBe(head);
    expect(Date.parse(v.lastSnapshot.time)).toBeGreaterThan(Date.now() - 60_000);
    expect(v.lastPush.commit).toBe(head);
    expect(v.pending).toEqual({ count: 0, atLeast: false, head });
    expect(v.master).toBe(`file://${masterDir}`);
    const text = await host.pacha(['status']);
    expect(text.stdout).toMatch(new RegExp(`^daemon: +running \\(pid ${d.pid}, idle\\), heartbeat [\\d.]+s ago`, 'm'));
    expect(text.stdout).toMatch(new RegExp(`^last push: +${head.slice(0, 12)} `, 'm'));
    expect((await d.stop()).code).toBe(0);
    // Stopped, with one local snapshot the master lacks.
    fs.writeFileSync(host.p('/etc/app/a.conf'), 'b\n');
    const snap = await host.pacha(['snapshot']);
    expect(snap.code).toBe(0);
    const after = JSON.parse((await host.pacha(['status', '--json'])).stdout);
    expect(after.daemon.running).toBe(false);
    expect(after.pending.count).toBe(1);
  });
});
