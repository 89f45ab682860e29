
// Tells pacha.callback.url when pushing has been failing for a while and when it recovers.
// Not on every failure: a master down for an hour would otherwise mean hundreds of POSTs.
// "Failing" = FAILURES_BEFORE_NOTICE consecutive failures, or failures for FAILING_AFTER_MS.

export const FAILURES_BEFORE_NOTICE = 3;
export const FAILING_AFTER_MS = 10 * 60_000;

export interface PushNotice {
  host: string;
  event: 'push-failing' | 'push-recovered';
  /** When the current run of failures began (ISO). */
  since: string;
  /** Last error message (failing), or the error that had been happening (recovered). */
  error: string;
  /** Local snapshots the master does not have. */
  pending: number;
  failures: number;
  time: string;
}

export class PushHealth {
  private failingSince: number | undefined;
  private failures = 0;
  private lastError = '';
  private noticeSent = false;
  private readonly send: (n: PushNotice) => Promise<void>;
  private readonly host: string;

  constructor(host: string, send: (n: PushNotice) => Promise<void>) {
    this.host = host;
    this.send = send;
  }

  get consecutiveFailures(): number {
    return this.failures;
  }

  get since(): number | undefined {
    return this.failingSince;
  }

  failed(error: string, pending: number, now = Date.now()): void {
    this.failingSince ??= now;
    this.failures++;
    this.lastError = error;
    if (!this.noticeSent && (this.failures >= FAILURES_BEFORE_NOTICE || now - this.failingSince >= FAILING_AFTER_MS)) {
      this.noticeSent = true;
      void this.send(this.notice('push-failing', pending, now));
    }
  }

  succeeded(pending: number, now = Date.now()): void {
    if (this.noticeSent) void this.send(this.notice('push-recovered', pending, now));
    this.failingSince = undefined;
    this.failures = 0;
    this.noticeSent = false;
    this.lastError = '';
  }

  private notice(event: PushNotice['event'], pending: number, now: number): PushNotice {
    return {
      host: this.host,
      event,
      since: new Date(this.failingSince ?? now).toISOString(),
      error: this.lastError,
      pending,
      failures: this.failures,
      time: new Date(now).toISOString(),
    };
  }
}
