import { loadConfig, type PachaConfig } from '@pacha/shared/config';
import { cronProblem } from '@pacha/shared/schedule';

// What a reload (SIGHUP) changes: the configuration read again and compared with the one in
// force, key by key, and the watched paths before and after.

export interface ConfigSource {
  /** --config, taken as given. */
  configPath?: string;
  env?: NodeJS.ProcessEnv;
}

/** The configuration as the daemon reads it: pacha.schedule checked as a cron expression too. */
export function loadDaemonConfig(src: ConfigSource): PachaConfig {
  return loadConfig({ configPath: src.configPath, env: src.env, scheduleCheck: cronProblem });
}

export interface ConfigChanges {
  /** One readable line per change, for the log ("pacha.frequency: 60 -> 10", "now watching /srv"). */
  lines: string[];
  /** The watchers must be made again: watched paths or pacha.ignore changed. */
  rewatch: boolean;
  /** Where or as whom pushes go changed: the kept connection and the backoff are stale. */
  master: boolean;
  schedule: boolean;
  logFile: boolean;
}

export function diffConfig(prev: PachaConfig, next: PachaConfig, prevRoots: string[], nextRoots: string[]): ConfigChanges {
  const lines: string[] = [];
  for (const k of new Set([...Object.keys(prev.effective), ...Object.keys(next.effective)])) {
    const a = prev.effective[k];
    const b = next.effective[k];
    if (a === b) continue;
    // A callback URL may carry a token: say that it changed, not what it is.
    lines.push(k === 'pacha.callback.url' ? `${k} changed` : `${k}: ${a ?? '(unset)'} -> ${b ?? '(unset)'}`);
  }
  const added = nextRoots.filter((r) => !prevRoots.includes(r));
  const removed = prevRoots.filter((r) => !nextRoots.includes(r));
  if (added.length > 0) lines.push(`now watching ${added.join(', ')}`);
  if (removed.length > 0) lines.push(`no longer watching ${removed.join(', ')}`);
  return {
    lines,
    rewatch: added.length > 0 || removed.length > 0 || next.ignore.join(',') !== prev.ignore.join(','),
    master:
      prev.host !== next.host || prev.hostsPath !== next.hostsPath || prev.sshPort !== next.sshPort || prev.sshUser !== next.sshUser ||
      prev.sshKeyFile !== next.sshKeyFile || prev.knownHostsFile !== next.knownHostsFile || prev.hostname !== next.hostname,
    schedule: next.schedule !== prev.schedule,
    logFile: next.logFile !== prev.logFile,
  };
}
