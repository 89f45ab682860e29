import type { Logger } from '@pacha/shared/log';
import { summaryLine } from '@pacha/shared/format/snapshot';
import { takeSnapshot, type SnapshotEnv, type SnapshotResult } from '@pacha/shared/snapshot/engine';
import { bytes, plural } from '../format.ts';

// The daemon's snapshot step: the paths the watcher marked, or a full reconcile scan, with the
// log line that says what it found. Failures are the caller's to retry.

export interface SnapshotWork {
  /** The batch's host paths; undefined: a full scan. */
  paths: string[] | undefined;
  /** When the first change of the batch was seen (ms since the epoch). */
  firstChangeAt: number;
  /** Why a full scan runs (start, schedule, reload, a watcher error, too many changes). */
  reason?: string;
}

export async function snapshotStep(env: SnapshotEnv, work: SnapshotWork): Promise<SnapshotResult> {
  const t0 = Date.now();
  const log = env.log;
  const res = await takeSnapshot(env, work.paths === undefined ? { message: work.reason ? `reconcile (${work.reason})` : undefined } : { dirty: work.paths });
  logSnapshot(log, work, res, Date.now() - t0);
  return res;
}

function logSnapshot(log: Logger, work: SnapshotWork, res: SnapshotResult, ms: number): void {
  const full = work.paths === undefined;
  const what = full ? `reconcile (${work.reason ?? 'full scan'})` : plural(work.paths!.length, 'changed path');
  const s = res.summary;
  if (res.commit) {
    log.info(
      `snapshot ${res.commit.slice(0, 12)}: ${summaryLine(s)} ` +
        `(${what}, ${bytes(s.bytesRead)} read, ${ms} ms${full ? '' : `, ${Date.now() - work.firstChangeAt} ms after the first change`})`,
    );
  } else if (full) {
    log.info(`${what}: no changes (${s.total} paths checked, ${ms} ms)`);
  } else {
    log.debug(`no changes in ${what} (${ms} ms)`);
  }
  log.debug(`snapshot phases: ${Object.entries(res.phases).map(([k, v]) => `${k} ${v} ms`).join(', ')}`);
  for (const w of res.warnings) log.debug(`snapshot warning: ${w}`);
  if (log.verbose) {
    const m = process.memoryUsage();
    log.debug(`memory: rss ${(m.rss / 2 ** 20).toFixed(0)} MiB, heap used ${(m.heapUsed / 2 ** 20).toFixed(0)} MiB`);
  }
}
