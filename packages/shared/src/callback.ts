import { registerSecret, type Logger } from './log.ts';

// pacha.callback.url: a JSON POST after a rebuild, a failed `pacha push`, and when the daemon's
// pushes start failing or recover. It is a notification, not part of the operation: a short
// timeout, and a failure is only a warning.
// Credentials in the URL (https://user:pass@host/...) are sent as an Authorization: Basic
// header (fetch refuses a URL that carries them) and are never shown: everywhere the URL
// appears (messages, log, check-config, --json) it is maskUrl's https://***@host/....

export const CALLBACK_TIMEOUT_MS = 5000;

export interface CallbackOptions {
  /** Named in warnings: "(the rebuild itself is not affected)". */
  what?: string;
  timeoutMs?: number;
}

/** The URL as it may be shown: its user name and password replaced by ***. */
export function maskUrl(url: string): string {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    // Not a URL: hide whatever sits between "://" and an "@".
    return url.replace(/^([^:/?#]*:\/\/)[^/?#]*@/, '$1***@');
  }
  if (u.username === '' && u.password === '') return url;
  u.username = '***';
  u.password = '';
  return u.href;
}

function decodeUserinfo(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s; // a stray "%": taken as typed
  }
}

/** What fetch gets: the URL without credentials, and the header that carries them. */
export function callbackRequest(url: string): { url: string; headers: Record<string, string> } {
  const u = new URL(url);
  const headers: Record<string, string> = { 'content-type': 'application/json', 'user-agent': 'pacha' };
  if (u.username !== '' || u.password !== '') {
    const user = decodeUserinfo(u.username);
    const pass = decodeUserinfo(u.password);
    registerSecret(pass);
    registerSecret(u.password); // as written in the URL, percent-encoded
    headers.authorization = `Basic ${Buffer.from(`${user}:${pass}`).toString('base64')}`;
    u.username = '';
    u.password = '';
  }
  return { url: u.href, headers };
}

export async function postCallback(url: string | undefined, body: unknown, log: Logger, opts: CallbackOptions = {}): Promise<boolean> {
  if (!url) return true;
  const { what = 'operation', timeoutMs = CALLBACK_TIMEOUT_MS } = opts;
  const req = callbackRequest(url);
  // Only the origin is named: the path or the query may carry a token too.
  const origin = new URL(req.url).origin;
  try {
    const res = await fetch(req.url, {
      method: 'POST',
      headers: req.headers,
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
