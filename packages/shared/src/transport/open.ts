import type { PachaConfig } from '../config.ts';
import type { Logger } from '../log.ts';
import type { Transport } from './transport.ts';
import { LocalTransport } from './local.ts';
import { UsageError } from '../errors.ts';

// Choose the transport from the configuration:
//   pacha.host = file://          the host tree is the local folder pacha.hosts.path (as given)
//   pacha.host = NAME             SFTP to NAME:pacha.ssh.port as pacha.ssh.user (OpenSSH or pacha-master serve)
export function isLocalMaster(config: PachaConfig): boolean {
  return config.host !== undefined && config.host.startsWith('file://');
}

export async function openTransport(config: PachaConfig, log: Logger): Promise<Transport> {
  if (config.host === undefined) {
    throw new UsageError('pacha.host is not set: name the master in the config (pacha.host = master.example.com, or file:// for a local folder)');
  }
  if (isLocalMaster(config)) return new LocalTransport(`file://${config.hostsPath}`);
  void log;
  throw new UsageError('SFTP transport not built yet');
}
