import { CronJob } from 'cron';

// The full reconcile schedule (pacha.schedule, a cron expression). Re-armed on reload.
export class ReconcileSchedule {
  private job: CronJob | undefined;
  private expr: string | undefined;
  private readonly onTick: () => void;

  constructor(onTick: () => void) {
    this.onTick = onTick;
  }

  get expression(): string | undefined {
    return this.expr;
  }

  /** (Re)start on `expr`; throws on an invalid expression (config validation catches it first). */
  arm(expr: string): void {
    this.stop();
    this.job = CronJob.from({ cronTime: expr, onTick: () => this.onTick(), start: true });
    this.expr = expr;
  }

  nextRun(): Date | undefined {
    if (!this.job) return undefined;
    try {
      return this.job.nextDate().toJSDate();
    } catch {
      return undefined;
    }
  }

  stop(): void {
    if (this.job) void this.job.stop();
    this.job = undefined;
  }
}
