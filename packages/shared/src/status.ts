import { readJson, updateJson, type StatePaths } from './state.ts';

// Typed view of the two JSON files in the state dir that `pacha status` and `pacha report` read.
// Several writers share them, each owning its top-level keys (updateJson merges keys):
//   status.json  lastSnapshot (snapshot engine), lastPush / pending / lastError (push),
//                lastRebuild (rebuild), daemon (the daemon's heartbeat), pushHealth (daemon)
//   report.json  snapshot (snapshot engine), push (push), rebuild (rebuild)
// Readers are tolerant: a field another writer has not written yet is simply absent.

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
  /** Pending count as last written by push (status recomputes it from the repository). */
  pending?: number;
  /** Older writers may store a bare message. */
  lastError?: LastError | string | null;
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
  /** Snapshots: quick, full or dirty (see engine.ts). */
  route?: string;
  /** Snapshots: records a stat-verify worker thread checked. */
  checkedByWorker?: number;
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

export function updateStatus(state: StatePaths, patch: Partial<StatusFile>): StatusFile {
  return updateJson<StatusFile>(state.status, patch);
}

export function readReport(state: StatePaths): ReportFile {
  return readJson<ReportFile>(state.report) ?? {};
}

export function updateReport(state: StatePaths, patch: Partial<ReportFile>): ReportFile {
  return updateJson<ReportFile>(state.report, patch);
}

/** lastError in one shape, whatever wrote it. */
export function normaliseError(e: StatusFile['lastError']): LastError | undefined {
  if (e === undefined || e === null) return undefined;
  if (typeof e === 'string') return { message: e };
  return e;
}

export function recordError(state: StatePaths, operation: string, message: string): void {
  updateStatus(state, { lastError: { time: new Date().toISOString(), operation, message } });
}
