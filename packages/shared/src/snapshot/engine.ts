// STUB: owned by the snapshot-engine engineer; replace keeping these signatures.
import type { PachaConfig } from '../config.ts';
import type { Logger } from '../log.ts';
import type { StatePaths } from '../state.ts';

export interface SnapshotEnv {
  config: PachaConfig;
  state: StatePaths;
  log: Logger;
}

export interface SnapshotOptions {
  message?: string;
  /** Host paths the watcher saw change since the last snapshot; undefined = full reconcile scan. */
  dirty?: string[];
}

export interface ChangeSummary {
  added: number;
  changed: number;
  deleted: number;
  metadataOnly: number;
  /** Paths in the snapshot. */
  total: number;
  bytesRead: number;
}

export interface SnapshotResult {
  /** null when nothing changed (no empty commits). */
  commit: string | null;
  parent: string | null;
  summary: ChangeSummary;
  /** Milliseconds per phase: scan, hash, write, commit. */
  phases: Record<string, number>;
  warnings: string[];
}

export async function takeSnapshot(env: SnapshotEnv, opts: SnapshotOptions = {}): Promise<SnapshotResult> {
  void env;
  void opts;
  throw new Error('takeSnapshot: not built yet');
}
