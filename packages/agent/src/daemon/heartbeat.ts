import type { Logger } from '@pacha/shared/log';
import type { StatePaths } from '@pacha/shared/state';
import { PACHA_VERSION } from '@pacha/shared/version';
import { recordHeartbeat, type DaemonHeartbeat } from '../status/status-files.ts';
import { errorMessage } from '@pacha/shared/errors';

// The daemon's heartbeat in status.json: written every HEARTBEAT_MS and on every change of
// state, so that `pacha status` tells a daemon that is alive from one that hangs.

/** How often the heartbeat is written; `pacha status` calls a daemon late after three intervals without one. */
export const HEARTBEAT_MS = 5_000;

/** What the daemon says of itself in each heartbeat. */
export type DaemonReport = Omit<DaemonHeartbeat, 'pid' | 'version' | 'startedAt' | 'heartbeat'>;

export class Heartbeat {
  private timer: NodeJS.Timeout | undefined;
  private readonly startedAt = new Date().toISOString();
  private readonly state: StatePaths;
  private readonly log: () => Logger;
  private readonly report: () => DaemonReport;

  constructor(state: StatePaths, log: () => Logger, report: () => DaemonReport) {
    this.state = state;
    this.log = log;
    this.report = report;
  }

  get running(): boolean {
    return this.timer !== undefined;
  }

  start(): void {
    this.timer ??= setInterval(() => this.beat(), HEARTBEAT_MS);
  }

  stop(): void {
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
  }

  beat(): void {
    try {
      recordHeartbeat(this.state, { pid: process.pid, version: PACHA_VERSION, startedAt: this.startedAt, heartbeat: new Date().toISOString(), ...this.report() });
    } catch (e) {
      this.log().debug(`cannot write heartbeat: ${errorMessage(e)}`);
    }
  }
}
