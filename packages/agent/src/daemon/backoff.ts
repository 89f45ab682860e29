// Capped exponential backoff with jitter for push retries while the master is away.
// Attempt n (0-based) waits min(max, initial * factor^n), then jitter spreads it by
// +/- `jitter` (a fraction) so a fleet that lost its master does not come back in lock step.
// Defaults: 5 s, 10 s, 20 s ... capped at 5 min, +/-20%.

export interface BackoffOptions {
  initialMs?: number;
  maxMs?: number;
  factor?: number;
  jitter?: number;
  random?: () => number;
}

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

/**
 * Backoff settings from the environment, for tests and tuning (documented in docs/daemon.md):
 * PACHA_RETRY_INITIAL_MS and PACHA_RETRY_MAX_MS. Anything else keeps the defaults.
 */
export function backoffFromEnv(env: NodeJS.ProcessEnv = process.env): BackoffOptions {
  const num = (v: string | undefined) => {
    const n = Number(v);
    return v !== undefined && v !== '' && Number.isFinite(n) && n > 0 ? n : undefined;
  };
  return { initialMs: num(env.PACHA_RETRY_INITIAL_MS), maxMs: num(env.PACHA_RETRY_MAX_MS) };
}
