import type { PachaConfig } from '@pacha/shared/config';
import { processAlive, readLock } from '@pacha/shared/lock';
import type { StatePaths } from '@pacha/shared/state';
import { readStatus, type LastError, type LastPush, type LastSnapshot } from './status-files.ts';
import { effectiveRoots } from '@pacha/shared/watchlist';
import { HEARTBEAT_MS } from '../daemon/heartbeat.ts';
import { describeMaster } from '../format.ts';
import { countPending } from './pending.ts';
import { summaryLine } from '@pacha/shared/format/snapshot';

// What `pacha status` shows: gathered from the lock file (is a daemon alive?), status.json
// (written by the agent's commands and daemon) and the local repository (pending).

export interface StatusView {
  host: string;
  master: string;
  daemon: {
    running: boolean;
    pid?: number;
    state?: string;
    startedAt?: string;
    heartbeat?: string;
    heartbeatAgeSeconds?: number;
    /** Running but no heartbeat for 3 intervals: busy in a long step, or hung. */
    heartbeatLate?: boolean;
    consecutivePushFailures?: number;
    nextPushAttempt?: string;
    nextReconcile?: string;
    /** Another pacha operation (snapshot, push, rebuild) holds the lock. */
    otherOperation?: { pid: number; operation: string };
    /** A lock file left by a process that is gone. */
    staleLockPid?: number;
  };
  watched: string[];
  lastSnapshot?: LastSnapshot;
  lastPush?: LastPush;
  pending: { count: number; atLeast: boolean; head: string | null } | null;
  lastError?: LastError;
  lastRebuild?: Record<string, unknown>;
}

export async function gatherStatus(config: PachaConfig, state: StatePaths, now = Date.now()): Promise<StatusView> {
  const status = readStatus(state);
  const holder = readLock(state.lock);
  const alive = holder !== undefined && processAlive(holder.pid);
  const hb = status.daemon;
  const daemon: StatusView['daemon'] = { running: false };
  if (holder && alive && holder.operation === 'daemon') {
    daemon.running = true;
    daemon.pid = holder.pid;
    if (hb && hb.pid === holder.pid) {
      const age = Math.max(0, (now - Date.parse(hb.heartbeat)) / 1000);
      Object.assign(daemon, {
        state: hb.state,
        startedAt: hb.startedAt,
        heartbeat: hb.heartbeat,
        heartbeatAgeSeconds: Math.round(age * 10) / 10,
        heartbeatLate: age * 1000 > 3 * HEARTBEAT_MS,
        consecutivePushFailures: hb.consecutivePushFailures,
        nextPushAttempt: hb.nextPushAttempt,
        nextReconcile: hb.nextReconcile,
      });
    }
  } else if (holder && alive) {
    daemon.otherOperation = { pid: holder.pid, operation: holder.operation };
  } else if (holder) {
    daemon.staleLockPid = holder.pid;
  }
  let watched: string[] = [];
  try {
    watched = effectiveRoots(config, state);
  } catch {
    watched = hb?.watching ?? [];
  }
  let pending: StatusView['pending'] = null;
  try {
    pending = await countPending(state.repo, status.lastPush?.commit ?? null);
  } catch {
    pending = typeof status.pending === 'number' ? { count: status.pending, atLeast: false, head: null } : null;
  }
  return {
    host: config.hostname,
    master: describeMaster(config),
    daemon,
    watched,
    lastSnapshot: status.lastSnapshot,
    lastPush: status.lastPush,
    pending,
    lastError: status.lastError ?? undefined,
    lastRebuild: status.lastRebuild,
  };
}

function ago(iso: string | undefined, now: number): string {
  if (!iso) return '';
  const s = Math.round((now - Date.parse(iso)) / 1000);
  if (!Number.isFinite(s)) return iso;
  const rel = s < 60 ? `${s}s ago` : s < 3600 ? `${Math.round(s / 60)} min ago` : s < 86400 ? `${(s / 3600).toFixed(1)} h ago` : `${Math.round(s / 86400)} days ago`;
  return `${iso} (${rel})`;
}

export function formatStatus(v: StatusView, now = Date.now()): string {
  const lines: string[] = [];
  const row = (k: string, val: string) => lines.push(`${(k + ':').padEnd(15)}${val}`);
  row('host', `${v.host} -> ${v.master}`);
  const d = v.daemon;
  if (d.running) {
    let s = `running (pid ${d.pid}${d.state ? `, ${d.state}` : ''})`;
    if (d.heartbeatAgeSeconds !== undefined) s += `, heartbeat ${d.heartbeatAgeSeconds}s ago${d.heartbeatLate ? ' (late: busy or hung)' : ''}`;
    row('daemon', s);
    if (d.startedAt) row('  started', ago(d.startedAt, now));
    if (d.consecutivePushFailures) row('  push retry', `${d.consecutivePushFailures} failed attempts, next ${d.nextPushAttempt ?? '?'}`);
    if (d.nextReconcile) row('  reconcile', `next ${d.nextReconcile}`);
  } else if (d.otherOperation) {
    row('daemon', `not running (${d.otherOperation.operation} running, pid ${d.otherOperation.pid})`);
  } else {
    row('daemon', `not running${d.staleLockPid ? ` (stale lock of pid ${d.staleLockPid}, which is gone)` : ''}; start it with: systemctl start pacha`);
  }
  row('watched', v.watched.length > 0 ? v.watched.join(', ') : '(nothing: pacha watch PATH)');
  const ls = v.lastSnapshot;
  if (ls) {
    const sum = ls.summary;
    const counts = sum ? ` (${summaryLine({ added: sum.added ?? 0, changed: sum.changed ?? 0, deleted: sum.deleted ?? 0, metadataOnly: sum.metadataOnly ?? 0 })})` : '';
    row('last snapshot', `${ls.commit ? ls.commit.slice(0, 12) : 'no changes'} ${ago(ls.time, now)}${counts}`);
  } else row('last snapshot', 'none yet');
  const lp = v.lastPush;
  row('last push', lp ? `${lp.commit ? lp.commit.slice(0, 12) : '-'} ${ago(lp.time, now)}${lp.commits !== undefined ? ` (${lp.commits} snapshots)` : ''}` : 'none yet');
  row('pending', v.pending ? `${v.pending.count}${v.pending.atLeast ? '+' : ''} snapshot${v.pending.count === 1 ? '' : 's'} not on the master` : 'unknown');
  const le = v.lastError;
  row('last error', le ? `${le.operation ? `${le.operation}: ` : ''}${le.message}${le.time ? ` (${ago(le.time, now)})` : ''}` : 'none');
  if (v.lastRebuild) {
    const r = v.lastRebuild;
    row('last rebuild', `${typeof r.host === 'string' ? r.host : ''} ${typeof r.commit === 'string' ? r.commit.slice(0, 12) : ''} ${typeof r.time === 'string' ? ago(r.time, now) : ''}`.trim());
  }
  return lines.join('\n');
}
