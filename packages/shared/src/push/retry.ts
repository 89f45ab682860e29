import { PachaError } from '../errors.ts';
import type { Logger } from '../log.ts';

// Transient failures (the network or the master briefly away) are retried with capped
// exponential backoff; refusals (bad host key, authentication, permissions, diverged history)
// are not: retrying them only repeats the same answer.

export interface RetryPolicy {
  attempts: number;
  baseMs: number;
  maxMs: number;
}

export const DEFAULT_RETRY: RetryPolicy = { attempts: 5, baseMs: 500, maxMs: 30_000 };

const TRANSIENT_CODES = new Set([
  'ECONNREFUSED', 'ECONNRESET', 'ECONNABORTED', 'ETIMEDOUT', 'EPIPE', 'EHOSTUNREACH', 'ENETUNREACH',
  'ENETDOWN', 'EAI_AGAIN', 'ENOTCONN', 'ESHUTDOWN',
]);
const REFUSAL = /host key|fingerprint|authenticat|permission denied|not allowed|refus(ed|ing) to|not an ancestor|does not have/i;
const TRANSIENT_TEXT = /timed? ?out|stopped answering|connection dropped|connection (lost|closed|reset|refused)|socket hang up|ECONNRESET|ECONNREFUSED|ETIMEDOUT|EPIPE|No response from server|not connected|end of stream/i;

export function isTransient(err: unknown): boolean {
  if (!(err instanceof Error)) return false;
  const e = err as Error & { code?: unknown; transient?: unknown; level?: unknown };
  if (e.transient === true) return true;
  if (e.transient === false) return false;
  const msg = e.message;
  if (REFUSAL.test(msg)) return false;
  if (err instanceof PachaError && !TRANSIENT_TEXT.test(msg)) return false;
  if (typeof e.code === 'string' && TRANSIENT_CODES.has(e.code)) return true;
  if (e.level === 'client-timeout' || e.level === 'client-socket') return true;
  if (TRANSIENT_TEXT.test(msg)) return true;
  return e.cause !== undefined && isTransient(e.cause);
}

export function backoffMs(policy: RetryPolicy, attempt: number): number {
  const exp = Math.min(policy.maxMs, policy.baseMs * 2 ** attempt);
  // Up to 25 % jitter, so a fleet that lost the master together does not return in lockstep.
  return Math.round(exp * (0.75 + Math.random() * 0.25));
}

export async function withRetry<T>(
  what: string,
  policy: RetryPolicy,
  log: Logger,
  fn: (attempt: number) => Promise<T>,
  signal?: AbortSignal,
): Promise<T> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await fn(attempt);
    } catch (err) {
      if (signal?.aborted || attempt + 1 >= policy.attempts || !isTransient(err)) throw err;
      const wait = backoffMs(policy, attempt);
      log.warn(`${what} failed (${(err as Error).message}); retry ${attempt + 1}/${policy.attempts - 1} in ${(wait / 1000).toFixed(1)} s`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, wait);
        signal?.addEventListener('abort', () => { clearTimeout(t); resolve(); }, { once: true });
      });
    }
  }
}
