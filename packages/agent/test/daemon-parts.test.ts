import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import type { AddressInfo } from 'node:net';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { silentLogger } from '@pacha/shared/log';
import { DirtyBatcher, MIN_SETTLE_MS } from '../src/daemon/batcher.ts';
import { PushHealth, FAILURES_BEFORE_NOTICE, type PushNotice } from '../src/daemon/callback-notify.ts';
import { postCallback } from '@pacha/shared/callback';
import { ReconcileSchedule } from '../src/daemon/reconcile-schedule.ts';
import { TreeWatcher } from '../src/daemon/watcher.ts';
import { diffConfig, loadDaemonConfig } from '../src/daemon/config-reload.ts';
import { backoffFromEnv, StepGate, WakeTimer } from '../src/daemon/step-scheduler.ts';

// The daemon's parts one by one: timers on vitest's fake clock (what is due when is exact, and
// nothing sleeps), a real inotify watcher and a real HTTP server.

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until(cond: () => boolean, timeoutMs = 5000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await sleep(20);
  }
}

describe('the daemon\'s backoff settings', () => {
  it('reads overrides from the environment and ignores nonsense', () => {
    expect(backoffFromEnv({ PACHA_RETRY_INITIAL_MS: '200', PACHA_RETRY_MAX_MS: '1000' })).toEqual({ initialMs: 200, maxMs: 1000 });
    expect(backoffFromEnv({ PACHA_RETRY_INITIAL_MS: 'soon', PACHA_RETRY_MAX_MS: '-4' })).toEqual({ initialMs: undefined, maxMs: undefined });
  });
});

describe('StepGate and WakeTimer', () => {
  it('a failed step waits out the backoff; success opens it at once', () => {
    const g = new StepGate({ initialMs: 1000, jitter: 0 });
    expect(g.isOpen(0)).toBe(true);
    expect(g.failed(10_000)).toBe(1000);
    expect(g.opensAt).toBe(11_000);
    expect(g.isOpen(10_999)).toBe(false);
    expect(g.isOpen(11_000)).toBe(true);
    expect(g.failed(11_000)).toBe(2000);
    expect(g.failures).toBe(2);
    g.succeeded();
    expect(g.failures).toBe(0);
    expect(g.isOpen(0)).toBe(true);
  });

  it('wakes once at the earliest future time, not for past ones; clear() cancels', () => {
    vi.useFakeTimers();
    try {
      let woke = 0;
      const t = new WakeTimer(() => woke++);
      const now = Date.now();
      t.arm([now - 5, 0]);
      t.arm([now + 60_000, now + 30, now - 1]);
      vi.advanceTimersByTime(29);
      expect(woke).toBe(0);
      vi.advanceTimersByTime(1);
      expect(woke).toBe(1);
      t.arm([Date.now() + 20]);
      t.clear();
      t.arm([]);
      vi.advanceTimersByTime(120_000);
      expect(woke).toBe(1);
    } finally {
      vi.useRealTimers();
    }
  });
});

describe('diffConfig (reload)', () => {
  let dir: string | undefined;
  afterEach(() => {
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
    dir = undefined;
  });

  it('says what changed key by key, hides the callback URL, and tells what must be redone', () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pacha-reload-'));
    const load = (lines: string[]) => {
      const file = path.join(dir!, 'pacha.conf');
      fs.writeFileSync(file, ['[DEFAULT]', 'pacha.hostname = web1', ...lines].join('\n') + '\n');
      return loadDaemonConfig({ configPath: file, env: { PACHA_ROOT_DIR: dir } });
    };
    const a = load(['pacha.host = master', 'pacha.frequency = 60', 'pacha.callback.url = https://hooks.example/x?token=s3cr3t']);
    const same = diffConfig(a, a, ['/etc'], ['/etc']);
    expect(same).toEqual({ lines: [], rewatch: false, master: false, schedule: false, logFile: false });
    const b = load(['pacha.host = master2', 'pacha.frequency = 10', 'pacha.callback.url = https://hooks.example/x?token=other', 'pacha.schedule = */5 * * * *']);
    const d = diffConfig(a, b, ['/etc', '/srv/old'], ['/etc', '/srv/new']);
    expect(d.lines).toEqual(expect.arrayContaining(['pacha.host: master -> master2', 'pacha.frequency: 60 -> 10', 'pacha.callback.url changed', 'now watching /srv/new', 'no longer watching /srv/old']));
    expect(d.lines.join('\n')).not.toContain('s3cr3t');
    expect(d).toMatchObject({ rewatch: true, master: true, schedule: true, logFile: false });
    const c = load(['pacha.host = master', 'pacha.frequency = 60', 'pacha.callback.url = https://hooks.example/x?token=s3cr3t', 'pacha.ignore = *.tmp']);
    expect(diffConfig(a, c, ['/etc'], ['/etc'])).toMatchObject({ rewatch: true, master: false, lines: [expect.stringMatching(/^pacha\.ignore: /)] });
  });
});

describe('DirtyBatcher', () => {
  beforeEach(() => vi.useFakeTimers());
  afterEach(() => vi.useRealTimers());

  it('is due at most delay after the FIRST change, later changes join the batch', () => {
    let dueAt = 0;
    const b = new DirtyBatcher(300, () => (dueAt = Date.now()));
    const t0 = Date.now();
    b.mark('/etc/a');
    vi.advanceTimersByTime(150);
    b.mark('/etc/b');
    b.mark('/etc/a');
    expect(b.isDue).toBe(false);
    vi.advanceTimersByTime(149);
    expect(dueAt).toBe(0);
    vi.advanceTimersByTime(1);
    expect(dueAt - t0).toBe(300); // not pushed back by the change at 150 ms
    expect(b.isDue).toBe(true);
    const batch = b.take()!;
    expect(batch.paths!.sort()).toEqual(['/etc/a', '/etc/b']);
    expect(b.isEmpty).toBe(true);
    expect(b.isDue).toBe(false);
  });

  it('delay 0 still coalesces a burst', () => {
    let due = 0;
    const b = new DirtyBatcher(0, () => due++);
    for (let i = 0; i < 5000; i++) b.mark(`/srv/f${i}`);
    vi.advanceTimersByTime(MIN_SETTLE_MS * 3);
    expect(due).toBe(1);
    expect(b.take()!.paths).toHaveLength(5000);
  });

  it('too many paths turn into a full scan', () => {
    let due = 0;
    const b = new DirtyBatcher(0, () => due++, 10);
    for (let i = 0; i < 11; i++) b.mark(`/srv/f${i}`);
    vi.advanceTimersByTime(MIN_SETTLE_MS);
    expect(due).toBe(1);
    expect(b.take()!.paths).toBeUndefined();
  });

  it('clear() drops the batch and its timer', () => {
    let due = 0;
    const b = new DirtyBatcher(0, () => due++);
    b.mark('/x');
    b.clear();
    vi.advanceTimersByTime(MIN_SETTLE_MS * 3);
    expect(due).toBe(0);
    expect(b.take()).toBeUndefined();
  });
});

describe('ReconcileSchedule', () => {
  it('ticks on a per-second cron and can be re-armed and stopped', async () => {
    vi.useFakeTimers();
    try {
      let ticks = 0;
      const s = new ReconcileSchedule(() => ticks++);
      s.arm('* * * * * *');
      expect(s.nextRun()!.getTime()).toBeGreaterThan(Date.now() - 1);
      await vi.advanceTimersByTimeAsync(2_000);
      expect(ticks).toBeGreaterThanOrEqual(2);
      s.arm('0 0 1 1 *');
      const after = ticks;
      await vi.advanceTimersByTimeAsync(5_000);
      expect(ticks).toBe(after);
      expect(s.expression).toBe('0 0 1 1 *');
      s.stop();
      expect(s.nextRun()).toBeUndefined();
    } finally {
      vi.useRealTimers();
    }
  });
});

// pacha.ignore's matcher is shared with the snapshot's scan and tested with it (shared/test/format.test.ts);
// the watcher's use of it is tested below.
describe('TreeWatcher (real inotify)', () => {
  let root: string | undefined;
  let watcher: TreeWatcher | undefined;
  afterEach(async () => {
    await watcher?.close();
    if (root) fs.rmSync(root, { recursive: true, force: true });
    watcher = undefined;
    root = undefined;
  });

  it('marks host paths dirty (nested edits, adds with their parent, deletes), honours ignore', async () => {
    root = fs.mkdtempSync(path.join(os.tmpdir(), 'pacha-watch-'));
    const p = (h: string) => path.join(root!, h);
    fs.mkdirSync(p('/etc/app/deep/er'), { recursive: true });
    fs.writeFileSync(p('/etc/app/deep/er/conf'), 'a');
    fs.writeFileSync(p('/etc/app/gone'), 'x');
    fs.mkdirSync(p('/outside'), { recursive: true });
    fs.writeFileSync(p('/single.conf'), 'v1');
    const dirty = new Set<string>();
    const trouble: string[] = [];
    watcher = new TreeWatcher({
      root: root!,
      roots: ['/etc/app', '/single.conf'],
      ignore: ['*.swp'],
      onDirty: (h) => dirty.add(h),
      onTrouble: (r) => trouble.push(r),
    });
    await watcher.start();
    expect(dirty.size).toBe(0); // ignoreInitial
    fs.appendFileSync(p('/etc/app/deep/er/conf'), 'b'); // in-place nested edit
    fs.writeFileSync(p('/etc/app/new'), 'n');
    fs.rmSync(p('/etc/app/gone'));
    fs.writeFileSync(p('/etc/app/.x.swp'), 'swap');
    fs.writeFileSync(p('/outside/no'), 'no');
    fs.writeFileSync(p('/single.conf'), 'v2');
    // Written last, in the directory of the swap file: once it is marked, the swap file's
    // event has been seen too (inotify keeps a watch's events in order).
    fs.writeFileSync(p('/etc/app/sentinel'), 's');
    await until(() => ['/etc/app/deep/er/conf', '/etc/app/new', '/etc/app/gone', '/single.conf', '/etc/app', '/etc/app/sentinel'].every((h) => dirty.has(h)));
    expect(dirty.has('/etc/app/.x.swp')).toBe(false);
    expect([...dirty].some((h) => h.startsWith('/outside'))).toBe(false);
    expect(dirty.has('/')).toBe(false); // the parent of a single-file root is not inside a root
    expect(trouble).toEqual([]);
  });
});

describe('TreeWatcher and attribute-only changes (real inotify)', () => {
  let root: string | undefined;
  let watcher: TreeWatcher | undefined;
  afterEach(async () => {
    await watcher?.close();
    if (root) fs.rmSync(root, { recursive: true, force: true });
  });

  it('a setfattr, a setfacl on a directory, a setcap and a chmod each mark the path dirty', async () => {
    root = fs.mkdtempSync(path.join(os.tmpdir(), 'pacha-watch-attr-'));
    const p = (h: string) => path.join(root!, h);
    fs.mkdirSync(p('/srv/share/sub'), { recursive: true });
    for (const f of ['a', 'b', 'c']) fs.writeFileSync(p(`/srv/share/sub/${f}`), f);
    fs.writeFileSync(p('/single.conf'), 'v1');
    const dirty = new Set<string>();
    watcher = new TreeWatcher({ root, roots: ['/srv/share', '/single.conf'], ignore: [], onDirty: (h) => dirty.add(h), onTrouble: () => {} });
    await watcher.start();
    const step = async (cmd: string, args: string[], hp: string) => {
      execFileSync(cmd, [...args, p(hp)]);
      await until(() => dirty.has(hp));
    };
    await step('setfattr', ['-n', 'user.tag', '-v', '1'], '/srv/share/sub/a');
    await step('setfacl', ['-m', 'g:4343:rwx'], '/srv/share/sub');
    await step('setcap', ['cap_net_raw+ep'], '/srv/share/sub/b');
    await step('chmod', ['0600'], '/srv/share/sub/c');
    await step('setfattr', ['-n', 'user.tag', '-v', '1'], '/srv/share');
    await step('setfattr', ['-n', 'user.tag', '-v', '1'], '/single.conf');
    expect([...dirty].filter((h) => !fs.existsSync(p(h)))).toEqual([]);
  });
});

describe('PushHealth and the callback', () => {
  let server: http.Server | undefined;
  afterEach(() => server?.close());

  it('POSTs push-failing after the threshold, once, then push-recovered', async () => {
    const got: PushNotice[] = [];
    server = http.createServer((req, res) => {
      let body = '';
      req.on('data', (d) => (body += d));
      req.on('end', () => {
        got.push(JSON.parse(body) as PushNotice);
        res.end('ok');
      });
    });
    await new Promise<void>((r) => server!.listen(0, '127.0.0.1', r));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`;
    // Notices are sent in the background: count them as they are handed over, and read what
    // the server received once it has them all.
    let handed = 0;
    const h = new PushHealth('web1', async (n) => {
      handed++;
      await postCallback(url, n, silentLogger);
    });
    const t0 = Date.parse('2026-01-01T00:00:00Z');
    for (let i = 0; i < FAILURES_BEFORE_NOTICE + 2; i++) h.failed(`connect ECONNREFUSED (${i})`, i + 1, t0 + i * 1000);
    expect(handed).toBe(1);
    await until(() => got.length >= 1);
    expect(got).toHaveLength(1);
    expect(got[0]).toMatchObject({ host: 'web1', event: 'push-failing', since: '2026-01-01T00:00:00.000Z', pending: FAILURES_BEFORE_NOTICE, failures: FAILURES_BEFORE_NOTICE });
    expect(got[0].error).toContain('ECONNREFUSED');
    h.succeeded(0, t0 + 60_000);
    await until(() => got.length >= 2);
    expect(got[1]).toMatchObject({ host: 'web1', event: 'push-recovered', since: '2026-01-01T00:00:00.000Z', pending: 0 });
    // A single failure followed by success says nothing.
    h.failed('blip', 1, t0 + 70_000);
    h.succeeded(0, t0 + 71_000);
    expect(handed).toBe(2);
    expect(got).toHaveLength(2);
  });

  it('a long outage notifies even with few attempts; an unreachable callback does not throw', async () => {
    const sent: PushNotice[] = [];
    const h = new PushHealth('db', async (n) => void sent.push(n));
    h.failed('down', 1, 0);
    h.failed('down', 2, 11 * 60_000);
    expect(sent.map((n) => n.event)).toEqual(['push-failing']);
    await postCallback('http://127.0.0.1:1/nothing', { x: 1 }, silentLogger, { timeoutMs: 2000 });
  });
});
