import type { PushResult } from '@pacha/shared/push/push';
import type { SnapshotResult } from '@pacha/shared/snapshot/engine';
import type { StatePaths } from '@pacha/shared/state';
import { recordError, recordPush, recordPushFailure, recordSnapshot } from '../status/status-files.ts';

// What each step of the daemon's loop did. The loop hands every result to one place
// (Daemon.stepDone), which records it in status.json and report.json (recordStep); whatever else
// follows the daemon's work reads from there (pacha.metrics.path is rewritten after each update).

export type StepResult =
  | { step: 'snapshot'; full: boolean; ms: number; ok: true; result: SnapshotResult }
  | { step: 'snapshot'; full: boolean; ms: number; ok: false; error: string }
  | { step: 'push'; ms: number; ok: true; result: PushResult }
  | { step: 'push'; ms: number; ok: false; error: string; pending: number | undefined };

export function recordStep(state: StatePaths, r: StepResult): void {
  if (r.step === 'snapshot') {
    if (r.ok) recordSnapshot(state, r.result);
    else recordError(state, r.full ? 'reconcile' : 'snapshot', r.error);
  } else if (r.ok) recordPush(state, r.result);
  else recordPushFailure(state, r.error, r.pending);
}
