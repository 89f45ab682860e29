import { epochSeconds, gauge, renderMetrics, type Metric } from '@pacha/shared/metrics';
import { writeFileAtomic, type StatePaths } from '@pacha/shared/state';
import { PACHA_VERSION } from '@pacha/shared/version';
import { countPending } from './pending.ts';
import { readReport, readStatus, type ReportEntry } from './status-files.ts';

// pacha.metrics.path: a node_exporter textfile (its textfile collector reads every *.prom file
// of a folder). It is another view of status.json and report.json, rewritten after each of
// their updates (every snapshot, push, error and daemon heartbeat), atomically: node_exporter
// must never read half a file. The names are documented in docs/install.md.

export async function agentMetrics(state: StatePaths): Promise<Metric[]> {
  const status = readStatus(state);
  const report = readReport(state);
  let pending: number | undefined;
  try {
    pending = (await countPending(state.repo, status.lastPush?.commit ?? null)).count;
  } catch {
    pending = status.pending;
  }
  const failed = status.lastError?.operation === 'push';
  return [
    gauge('pacha_agent_info', 'pacha agent version (always 1)', 1, { version: PACHA_VERSION }),
    gauge('pacha_agent_last_snapshot_timestamp_seconds', 'time of the last snapshot that committed a change', epochSeconds(status.lastSnapshot?.time)),
    gauge('pacha_agent_last_snapshot_duration_seconds', 'duration of the last snapshot (changed or not)', duration(report.snapshot)),
    gauge('pacha_agent_last_snapshot_read_bytes', 'bytes read by the last snapshot', numberField(report.snapshot, 'bytesRead')),
    gauge('pacha_agent_last_snapshot_files', 'paths recorded by the last snapshot', numberField(report.snapshot, 'files')),
    gauge('pacha_agent_last_push_timestamp_seconds', 'time of the last successful push', epochSeconds(status.lastPush?.time)),
    gauge('pacha_agent_last_push_duration_seconds', 'duration of the last successful push', duration(report.push)),
    gauge('pacha_agent_last_push_bytes', 'bytes sent by the last successful push', status.lastPush?.bytes),
    gauge('pacha_agent_pending_snapshots', 'local snapshots the master does not have yet', pending),
    gauge('pacha_agent_last_push_failed', '1 when the last push attempt failed, else 0', failed ? 1 : 0),
    gauge('pacha_agent_consecutive_push_failures', 'push attempts that failed in a row (counted by the daemon)', status.daemon?.consecutivePushFailures ?? (failed ? undefined : 0)),
    gauge(
      'pacha_agent_last_error_timestamp_seconds',
      'time of the last error, by operation (snapshot, reconcile, push, rebuild)',
      status.lastError ? epochSeconds(status.lastError.time) : undefined,
      status.lastError?.operation ? { operation: status.lastError.operation } : undefined,
    ),
    gauge('pacha_agent_daemon_heartbeat_timestamp_seconds', 'last heartbeat of the daemon (every few seconds while it runs)', epochSeconds(status.daemon?.heartbeat)),
  ];
}

let chain: Promise<void> = Promise.resolve();

/**
 * Rewrite the textfile (when pacha.metrics.path is set). Refreshes run one after the other, so a
 * slower earlier one never overwrites a later one. Failures are kept from the caller (metrics
 * must not stop a snapshot or a push); `pacha check-config` reports an unwritable path.
 */
export function refreshMetrics(state: StatePaths): Promise<void> {
  const file = state.metrics;
  if (file === undefined) return Promise.resolve();
  chain = chain
    .then(async () => writeFileAtomic(file, renderMetrics(await agentMetrics(state)), 0o644))
    .catch(() => {});
  return chain;
}

function duration(e: ReportEntry | undefined): number | undefined {
  if (!e?.phases) return undefined;
  const ms = Object.values(e.phases).reduce((a, b) => a + (typeof b === 'number' ? b : 0), 0);
  return ms / 1000;
}

function numberField(e: ReportEntry | undefined, key: string): number | undefined {
  const v = e?.[key];
  return typeof v === 'number' ? v : undefined;
}
