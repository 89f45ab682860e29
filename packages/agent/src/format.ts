import type { PachaConfig } from '@pacha/shared/config';
import { isLocalMaster } from '@pacha/shared/transport/open';

// How the agent's output names things (daemon log lines, `pacha status`, `pacha report`):
// the master, durations, sizes.

export function describeMaster(config: PachaConfig): string {
  if (config.host === undefined) return '(no master: pacha.host is not set)';
  if (isLocalMaster(config)) return `file://${config.hostsPath}`;
  return `sftp://${config.sshUser}@${config.host}:${config.sshPort}${config.hostsPath}`;
}

export function seconds(ms: number): string {
  return ms < 10_000 ? `${(ms / 1000).toFixed(1)}s` : `${Math.round(ms / 1000)}s`;
}

export function bytes(n: number | undefined): string {
  if (n === undefined) return '?';
  if (n < 1024) return `${n} B`;
  if (n < 1024 ** 2) return `${(n / 1024).toFixed(1)} KiB`;
  if (n < 1024 ** 3) return `${(n / 1024 ** 2).toFixed(1)} MiB`;
  return `${(n / 1024 ** 3).toFixed(2)} GiB`;
}

export function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}
