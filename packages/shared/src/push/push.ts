// STUB: owned by the push engineer; replace keeping these signatures.
import type { PachaConfig } from '../config.ts';
import type { Logger } from '../log.ts';
import type { StatePaths } from '../state.ts';
import type { Transport } from '../transport/transport.ts';

export interface PushEnv {
  config: PachaConfig;
  state: StatePaths;
  log: Logger;
}

export interface PushResult {
  /** Commits the master did not have before this push. */
  commits: number;
  objects: number;
  bytes: number;
  /** The master's ref after the push. */
  remoteHead: string | null;
  /** Milliseconds per phase: connect, negotiate, pack, upload, ref. */
  phases: Record<string, number>;
}

export async function pushSnapshots(env: PushEnv, opts: { transport?: Transport; signal?: AbortSignal } = {}): Promise<PushResult> {
  void env;
  void opts;
  throw new Error('pushSnapshots: not built yet');
}
