import { UsageError } from './errors.ts';

// The master's host tree (DESIGN.md), the same behind OpenSSH and `pacha-master serve`:
//   <hosts.path>/<host>/repo/          bare git repository (and the push lock)
//   <hosts.path>/<host>/pacha_pre/     hook scripts run before files are restored
//   <hosts.path>/<host>/pacha_post/    hook scripts run after
// and the one rule for what may name a host: its folder's name, its SSH user name on the
// embedded master, the name the agent pushes as and the operator inspects.

/** What a host name may be, for messages. */
export const HOST_NAME_ACCEPTED = "letters, digits, '.', '-', '_', not starting with '.' or '-', at most 253 characters";

export function isValidHostName(name: string): boolean {
  return /^[A-Za-z0-9_][A-Za-z0-9._-]{0,252}$/.test(name);
}

/** A host name given by the operator: a UsageError naming what is accepted when it is not one. */
export function checkHostName(name: string, what = 'a host name'): string {
  if (!isValidHostName(name)) throw new UsageError(`"${name}" is not ${what} (accepted: ${HOST_NAME_ACCEPTED})`);
  return name;
}

/** The names inside one host's folder. */
export const HOST_TREE = {
  repo: 'repo',
  pre: 'pacha_pre',
  post: 'pacha_post',
  /** The push lock, inside the repository (git ignores it). */
  lock: 'repo/pacha-push.lock',
} as const;

/** Where things live in one host's folder on the master (POSIX paths: remote or local). */
export interface MasterHostPaths {
  dir: string;
  repo: string;
  pre: string;
  post: string;
  lock: string;
}

export function masterHostPaths(hostsPath: string, host: string): MasterHostPaths {
  const dir = `${hostsPath.replace(/\/+$/, '')}/${host}`;
  return {
    dir,
    repo: `${dir}/${HOST_TREE.repo}`,
    pre: `${dir}/${HOST_TREE.pre}`,
    post: `${dir}/${HOST_TREE.post}`,
    lock: `${dir}/${HOST_TREE.lock}`,
  };
}
