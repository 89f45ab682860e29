import type { Logger } from './log.ts';

// pacha.callback.url: a JSON POST after a rebuild, a failed `pacha push`, and when the daemon's
// pushes start failing or recover. It is a notification, not part of the operation: a short
// timeout, and a failure is only a warning. Only the URL's origin is logged (it may carry a token).

export const CALLBACK_TIMEOUT_MS = 5000;

export async function postCallback(url: string | undefined, body: unknown, log: Logger, timeoutMs = CALLBACK_TIMEOUT_MS): Promise<boolean> {
  if (!url) return true;
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
      log.warn(`callback ${origin} answered HTTP ${res.status} (the operation itself is not affected)`);
      return false;
    }
    log.debug(`callback sent to ${origin}`);
    return true;
  } catch (e) {
    log.warn(`callback ${origin} failed: ${(e as Error).message} (the operation itself is not affected)`);
    return false;
  }
}
