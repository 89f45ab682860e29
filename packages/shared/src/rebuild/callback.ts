import type { Logger } from '../log.ts';

// pacha.callback.url: a JSON POST after each rebuild. It is a notification, not part of the
// rebuild: a short timeout, and a failure is only a warning.

export const CALLBACK_TIMEOUT_MS = 5000;

export async function postCallback(url: string | undefined, body: unknown, log: Logger, timeoutMs = CALLBACK_TIMEOUT_MS): Promise<boolean> {
  if (!url) return true;
  try {
    const res = await fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'user-agent': 'pacha' },
      body: JSON.stringify(body),
      signal: AbortSignal.timeout(timeoutMs),
    });
    if (!res.ok) {
      log.warn(`callback ${new URL(url).origin}: HTTP ${res.status} (the rebuild itself is not affected)`);
      return false;
    }
    return true;
  } catch (e) {
    log.warn(`callback ${url.replace(/\/\/[^@/]*@/, '//')}: ${(e as Error).message} (the rebuild itself is not affected)`);
    return false;
  }
}
