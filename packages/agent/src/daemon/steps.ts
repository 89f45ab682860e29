import type { PushResult } from '@pacha/shared/push/push';
import type { SnapshotResult } from '@pacha/shared/snapshot/engine';
import type { StatePaths } from '@pacha/shared/state';
import { recordError, recordPush, recordPushFailure, recordSnapshot } from '../status/status-files.ts';

// What each step of the daemon's loop did. The daemon records every result in status.json and
// report.json (recordStep) and hands it to DaemonOptions.onStep, the place for anything else
// that follows the daemon's work (metrics, for one).

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
