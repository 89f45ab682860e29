import path from 'node:path';
import { hostPath } from '@pacha/shared/paths';
import { masterHostPaths } from '@pacha/shared/master-tree';

// Where the master keeps things. Everything hangs off the hosts path (one folder per host);
// what the hosts must not change lives beside it, outside every host's folder:
//   <hosts-path>/<host>/{repo,pacha_pre,pacha_post}   the host tree (DESIGN.md)
//   <hosts-path>/../keys/<host>.pub                    public keys a host may log in with
//   <hosts-path>/../ssh_host_ed25519_key(.pub)         the server's host key
// Defaults are host paths (resolved under PACHA_ROOT_DIR); command-line paths are taken as given.

export const DEFAULT_HOSTS_PATH = '/pacha/hosts';
/** The hosts path the agents are configured with (pacha.hosts.path default). */
export const DEFAULT_VIRTUAL_HOSTS_PATH = '/pacha/hosts';

export interface MasterLayout {
  hostsPath: string;
  keysDir: string;
  hostKeyFile: string;
}

export function masterLayout(opts: { hostsPath?: string; keysDir?: string; hostKey?: string } = {}): MasterLayout {
  const hostsPath = path.resolve(opts.hostsPath ?? hostPath(DEFAULT_HOSTS_PATH));
  const parent = path.dirname(hostsPath);
  return {
    hostsPath,
    keysDir: path.resolve(opts.keysDir ?? path.join(parent, 'keys')),
    hostKeyFile: path.resolve(opts.hostKey ?? path.join(parent, 'ssh_host_ed25519_key')),
  };
}

export function hostDir(layout: MasterLayout, host: string): string {
  return masterHostPaths(layout.hostsPath, host).dir;
}

export function hostKeysFile(layout: MasterLayout, host: string): string {
  return path.join(layout.keysDir, `${host}.pub`);
}
