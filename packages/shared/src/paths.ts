import path from 'node:path';

// Every absolute *host* path the program touches goes through hostPath(), so that
// PACHA_ROOT_DIR can relocate a whole host (tests, containers restoring into a volume).
// Paths given on the command line or in environment variables are taken as given.

export function rootDir(env: NodeJS.ProcessEnv = process.env): string {
  const r = env.PACHA_ROOT_DIR;
  return r && r.length > 0 ? path.resolve(r) : '/';
}

/** Resolve an absolute host path (e.g. /etc/pacha.conf) to where it lives on this machine. */
export function hostPath(hostAbs: string, root: string = rootDir()): string {
  if (!path.isAbsolute(hostAbs)) throw new Error(`not an absolute host path: ${hostAbs}`);
  const norm = path.posix.normalize(hostAbs);
  return root === '/' ? norm : path.join(root, norm);
}

/** Inverse of hostPath: the host path of a local path under the root, or null if outside it. */
export function toHostPath(localAbs: string, root: string = rootDir()): string | null {
  const norm = path.resolve(localAbs);
  if (root === '/') return norm;
  if (norm === root) return '/';
  if (!norm.startsWith(root + '/')) return null;
  return norm.slice(root.length);
}

/** Expand a leading ~ to the home directory of the user running pacha (as a host path). */
export function expandHome(p: string, env: NodeJS.ProcessEnv = process.env): string {
  if (p === '~' || p.startsWith('~/')) {
    const home = env.HOME && env.HOME.length > 0 ? env.HOME : '/root';
    return path.posix.join(home, p.slice(1));
  }
  return p;
}

/** Host path -> name inside a snapshot tree (no leading slash): /opt/foo/a -> opt/foo/a. */
export function treePath(hostAbs: string): string {
  return path.posix.normalize(hostAbs).replace(/^\/+/, '');
}
