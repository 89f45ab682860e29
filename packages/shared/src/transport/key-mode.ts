// The private key's mode rule, apart from ssh-auth.ts so that `pacha check-config` applies it
// without loading ssh2.

/**
 * As OpenSSH: a private key that group or others can get at is refused, not used. The fix is
 * in the message itself (the daemon logs messages without hints). Null when the mode is fine.
 */
export function keyModeProblem(file: string, mode: number): string | null {
  if ((mode & 0o077) === 0) return null;
  return `has mode ${(mode & 0o7777).toString(8).padStart(4, '0')}: group or others can access it, so it is refused as OpenSSH does; fix: chmod 600 ${file}`;
}
