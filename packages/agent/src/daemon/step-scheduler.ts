import { Backoff, type BackoffOptions } from '@pacha/shared/backoff';

// When the daemon's steps may run: a step that failed waits out a backoff before its next
// attempt (StepGate), and one timer wakes the step loop when the first of them may run again
// (WakeTimer). The loop itself (daemon.ts) decides which step runs.

/**
 * The daemon's backoff from the environment, for tuning and the tests (docs/daemon.md):
 * PACHA_RETRY_INITIAL_MS and PACHA_RETRY_MAX_MS. Anything else keeps the shared defaults.
 */
export function backoffFromEnv(env: NodeJS.ProcessEnv = process.env): BackoffOptions {
  const num = (v: string | undefined) => {
    const n = Number(v);
    return v !== undefined && v !== '' && Number.isFinite(n) && n > 0 ? n : undefined;
  };
  return { initialMs: num(env.PACHA_RETRY_INITIAL_MS), maxMs: num(env.PACHA_RETRY_MAX_MS) };
}

export class StepGate {
  private readonly backoff: Backoff;
  private notBefore = 0;

  constructor(opts: BackoffOptions) {
    this.backoff = new Backoff(opts);
  }

  /** Failures since the last success. */
  get failures(): number {
    return this.backoff.failures;
  }

  /** When the step may run again (ms since the epoch; 0: now). */
  get opensAt(): number {
    return this.notBefore;
  }

  isOpen(now = Date.now()): boolean {
    return now >= this.notBefore;
  }

  /** The step failed: returns how long it waits before the next attempt (ms). */
  failed(now = Date.now()): number {
    const delay = this.backoff.next();
    this.notBefore = now + delay;
    return delay;
  }

  succeeded(): void {
    this.backoff.reset();
    this.notBefore = 0;
  }
}

/** One timer that wakes the step loop at the earliest of the times given. */
export class WakeTimer {
  private timer: NodeJS.Timeout | undefined;
  private readonly wake: () => void;

  constructor(wake: () => void) {
    this.wake = wake;
  }

  /** Wake at the earliest future time among `times`; none in the future: no timer. */
  arm(times: number[], now = Date.now()): void {
    this.clear();
    const future = times.filter((t) => t > now);
    if (future.length === 0) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.wake();
    }, Math.min(...future) - now);
  }

  clear(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
  }
}
