import { Backoff } from '../backoff.ts';
import { errorMessage, isTransient } from '../errors.ts';
import type { Logger } from '../log.ts';

// Retry as a wrapper around one attempt: transient failures (a ConnectionError: the network or
// the master briefly away, as the transport decided) are retried with backoff; everything else
// (bad host key, authentication, permissions, diverged history) is not: retrying it only repeats
// the same answer.

export interface RetryPolicy {
  attempts: number;
  baseMs: number;
  maxMs: number;
}

export const DEFAULT_RETRY: RetryPolicy = { attempts: 5, baseMs: 500, maxMs: 30_000 };

export async function withRetry<T>(
  what: string,
  policy: RetryPolicy,
  log: Logger,
  fn: (attempt: number) => Promise<T>,
  signal?: AbortSignal,
): Promise<T> {
  const backoff = new Backoff({ initialMs: policy.baseMs, maxMs: policy.maxMs });
  for (let attempt = 0; ; attempt++) {
    try {
      return await fn(attempt);
    } catch (err) {
      if (signal?.aborted || attempt + 1 >= policy.attempts || !isTransient(err)) throw err;
      const wait = backoff.next();
      log.warn(`${what} failed (${errorMessage(err)}); retry ${attempt + 1}/${policy.attempts - 1} in ${(wait / 1000).toFixed(1)} s`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, wait);
        signal?.addEventListener('abort', () => { clearTimeout(t); resolve(); }, { once: true });
      });
    }
  }
}
