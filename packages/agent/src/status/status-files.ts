import fs from 'node:fs';
import type { PushResult } from '@pacha/shared/push/push';
import type { RebuildRecord } from '@pacha/shared/rebuild/rebuild';
import type { SnapshotResult } from '@pacha/shared/snapshot/engine';
import { readJson, writeFileAtomic, type StatePaths } from '@pacha/shared/state';
import { refreshMetrics } from './metrics-file.ts';
import { countPending } from './pending.ts';

// The operator's two JSON files in the state dir, read by `pacha status` and `pacha report`:
//   status.json  lastSnapshot, lastPush, pending, lastError, lastRebuild, daemon (heartbeat)
//   report.json  snapshot, push, rebuild: phase timings and sizes of the last of each
// The library returns what it did (SnapshotResult, PushResult, RebuildRecord); only the agent,
// through the functions below, writes these files. A command holds the pid lock while it runs
// and the daemon writes from its one thread, so the read-merge-write never races.

export interface LastSnapshot {
  commit: string | null;
  /** ISO time. */
  time: string;
  summary?: {
    added?: number;
    changed?: number;
    deleted?: number;
    metadataOnly?: number;
    total?: number;
    bytesRead?: number;
  };
}

export interface LastPush {
  time: string;
  /** The commit the master's ref points at after the push. */
  commit: string | null;
  commits?: number;
  bytes?: number;
}

export interface LastError {
  time?: string;
  /** What failed: snapshot, push, rebuild, reconcile... */
  operation?: string;
  message: string;
}

export type DaemonState = 'starting' | 'idle' | 'snapshot' | 'reconcile' | 'push' | 'stopping' | 'stopped';

export interface DaemonHeartbeat {
  pid: number;
  version: string;
  startedAt: string;
  /** Last time the daemon wrote its heartbeat (every few seconds while it runs). */
  heartbeat: string;
  state: DaemonState;
  /** Host paths being watched. */
  watching: string[];
  /** Set while pushes fail: when the next attempt is due. */
  nextPushAttempt?: string;
  consecutivePushFailures?: number;
  nextReconcile?: string;
}

export interface StatusFile {
  lastSnapshot?: LastSnapshot;
  lastPush?: LastPush;
  /** Snapshots the master lacked at the last push (status recomputes it from the repository). */
  pending?: number;
  lastError?: LastError | null;
  lastRebuild?: Record<string, unknown> & { time?: string; host?: string; commit?: string };
  daemon?: DaemonHeartbeat;
}

/** One operation's entry in report.json: phase timings in ms and the sizes involved. */
export interface ReportEntry {
  time?: string;
  phases?: Record<string, number>;
  bytes?: number;
  files?: number;
  objects?: number;
  commits?: number;
  commit?: string | null;
  /** Snapshots: how the files were looked at (see SnapshotResult.route). */
  route?: string;
  [extra: string]: unknown;
}

export interface ReportFile {
  snapshot?: ReportEntry;
  push?: ReportEntry;
  rebuild?: ReportEntry;
}

export function readStatus(state: StatePaths): StatusFile {
  return readJson<StatusFile>(state.status) ?? {};
}

export function readReport(state: StatePaths): ReportFile {
  return readJson<ReportFile>(state.report) ?? {};
}

/**
 * status.json and report.json are written without fsync (the daemon writes them several times
 * per change, and an fsync each cost more than the snapshot): a crash can leave one torn. Its
 * readers say so; its writers start it afresh.
 */
function readForUpdate<T>(file: string): T | undefined {
  try {
    return readJson<T>(file);
  } catch (e) {
    if (e instanceof SyntaxError) return undefined;
    throw e;
  }
}

/** Merge top-level keys into a JSON file, atomically. */
function update<T extends object>(file: string, patch: Partial<T>): void {
  const cur = readForUpdate<T>(file) ?? ({} as T);
  writeFileAtomic(file, JSON.stringify({ ...cur, ...patch }, null, 2) + '\n', 0o600, { durable: false });
}

// pacha.metrics.path is another view of these two files: refreshed after each update.
function updateStatus(state: StatePaths, patch: Partial<StatusFile>): void {
  update<StatusFile>(state.status, patch);
  void refreshMetrics(state);
}

function updateReport(state: StatePaths, patch: Partial<ReportFile>): void {
  update<ReportFile>(state.report, patch);
  void refreshMetrics(state);
}

export function recordError(state: StatePaths, operation: string, message: string): void {
  updateStatus(state, { lastError: { time: new Date().toISOString(), operation, message } });
}

export function recordHeartbeat(state: StatePaths, daemon: DaemonHeartbeat): void {
  updateStatus(state, { daemon });
}

/** A finished snapshot: lastSnapshot when it committed, the report's snapshot entry always. */
export function recordSnapshot(state: StatePaths, r: SnapshotResult): void {
  const time = new Date().toISOString();
  if (r.commit !== null) updateStatus(state, { lastSnapshot: { commit: r.commit, time, summary: r.summary } });
  updateReport(state, {
    snapshot: {
      time,
      commit: r.commit,
      route: r.route,
      phases: r.phases,
      bytesRead: r.summary.bytesRead,
      bytesWritten: r.bytesWritten,
      filesRead: r.filesRead,
      files: r.summary.total,
      warnings: r.warnings.length,
    },
  });
}

/** A push that succeeded: nothing pending, a push error before it is over. */
export function recordPush(state: StatePaths, r: PushResult): void {
  const time = new Date().toISOString();
  const prev = readStatus(state);
  updateStatus(state, {
    lastPush: { time, commit: r.remoteHead, commits: r.commits, bytes: r.bytes },
    pending: 0,
    ...(prev.lastError?.operation === 'push' ? { lastError: null } : {}),
  });
  updateReport(state, { push: { time, phases: r.phases, bytes: r.bytes, objects: r.objects, commits: r.commits } });
}

/** Local snapshots the master lacks, counted from the last push recorded; undefined when that cannot be told. */
export async function pendingSinceLastPush(state: StatePaths): Promise<number | undefined> {
  try {
    return (await countPending(state.repo, readStatus(state).lastPush?.commit ?? null)).count;
  } catch {
    // A repository (or a status.json) that cannot be read leaves the count unknown.
    return undefined;
  }
}

/** A push that failed: the error, and how many snapshots wait for the master when known. */
export function recordPushFailure(state: StatePaths, message: string, pending: number | undefined): void {
  updateStatus(state, {
    ...(pending !== undefined ? { pending } : {}),
    lastError: { time: new Date().toISOString(), operation: 'push', message },
  });
}

/** A rebuild that ran (dry runs record nothing), ok or failed. */
export function recordRebuild(state: StatePaths, r: RebuildRecord): void {
  // A rebuild that failed before it made the state dir leaves nothing behind.
  if (!fs.existsSync(state.dir)) return;
  const { time, host, commit, phases, counts, seconds, error } = r;
  updateReport(state, { rebuild: { time, host, commit, phases, files: counts.created + counts.replaced, bytes: counts.bytes, counts, seconds, ...(error !== undefined ? { error } : {}) } });
  updateStatus(state, {
    lastRebuild: { time, host, commit: commit ?? undefined, outcome: r.outcome, ...(error !== undefined ? { error } : {}), counts, seconds },
  });
  if (error !== undefined) recordError(state, 'rebuild', error);
}
