import { CronTime } from 'cron';

// pacha.schedule parsed by the cron library that runs it. Kept out of config.ts so that only
// the commands that use the schedule (the daemon, check-config) load the library.

/** What the cron library finds wrong with `expr`, or null. */
export function cronProblem(expr: string): string | null {
  try {
    new CronTime(expr);
    return null;
  } catch (e) {
    return (e as Error).message;
  }
}
