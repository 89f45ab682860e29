import type { Logger } from './log.ts';

// pacha.callback.url: a JSON POST after a rebuild, a failed `pacha push`, and when the daemon's
// pushes start failing or recover. It is a notification, not part of the operation: a short
// timeout, and a failure is only a warning. Only the URL's origin is logged (it may carry a token).

export const CALLBACK_TIMEOUT_MS = 5000;

export interface CallbackOptions {
  /** Named in warnings: "(the rebuild itself is not affected)". */
  what?: string;
  timeoutMs?: number;
}

export async function postCallback(url: string | undefined, body: unknown, log: Logger, opts: CallbackOptions = {}): Promise<boolean> {
  if (!url) return true;
  const { what = 'operation', timeoutMs = CALLBACK_TIMEOUT_MS } = opts;
  const origin = new URL(url).origin;
  try {
    const res = await fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'user-agent': 'pacha' },
      body: JSON.stringify(body),
      signal: AbortSignal.timeout(timeoutMs),
    });
    await res.body?.cancel();
    if (!res.ok) {
      log.warn(`callback ${origin} answered HTTP ${res.status} (the ${what} itself is not affected)`);
      return false;
    }
    log.debug(`callback sent to ${origin}`);
    return true;
  } catch (e) {
    log.warn(`callback ${origin} failed: ${(e as Error).message} (the ${what} itself is not affected)`);
    return false;
  }
}
