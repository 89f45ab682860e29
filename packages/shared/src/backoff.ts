// Capped exponential backoff with jitter: the one rule for waiting between attempts (push
// retries, the daemon's push and snapshot steps while the master or the disk is away).
// Attempt n (0-based) waits min(max, initial * factor^n), then jitter spreads it by +/- `jitter`
// (a fraction) so a fleet that lost its master does not come back in lock step.

export interface BackoffOptions {
  initialMs?: number;
  maxMs?: number;
  factor?: number;
  jitter?: number;
  random?: () => number;
}

/** 5 s, 10 s, 20 s ... capped at 5 min, +/-20 %. */
export const DEFAULT_BACKOFF = { initialMs: 5_000, maxMs: 300_000, factor: 2, jitter: 0.2 };

export class Backoff {
  readonly initialMs: number;
  readonly maxMs: number;
  readonly factor: number;
  readonly jitter: number;
  private readonly random: () => number;
  private attempts = 0;

  constructor(opts: BackoffOptions = {}) {
    this.initialMs = opts.initialMs ?? DEFAULT_BACKOFF.initialMs;
    this.maxMs = Math.max(opts.maxMs ?? DEFAULT_BACKOFF.maxMs, this.initialMs);
    this.factor = opts.factor ?? DEFAULT_BACKOFF.factor;
    this.jitter = Math.min(Math.max(opts.jitter ?? DEFAULT_BACKOFF.jitter, 0), 1);
    this.random = opts.random ?? Math.random;
  }

  /** Failures since the last reset. */
  get failures(): number {
    return this.attempts;
  }

  /** Record a failure and return how long to wait before the next attempt (ms). */
  next(): number {
    const base = Math.min(this.maxMs, this.initialMs * this.factor ** this.attempts);
    this.attempts++;
    const spread = 1 - this.jitter + 2 * this.jitter * this.random();
    return Math.round(Math.min(this.maxMs, base * spread));
  }

  reset(): void {
    this.attempts = 0;
  }
}
