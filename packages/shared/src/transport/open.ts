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

export interface OpenOptions {
  connectTimeoutMs?: number;
  /** Per operation (transfers: without progress). Env PACHA_SSH_TIMEOUT (seconds) sets both. */
  opTimeoutMs?: number;
  env?: NodeJS.ProcessEnv;
}

export async function openTransport(config: PachaConfig, log: Logger, opts: OpenOptions = {}): Promise<Transport> {
  if (config.host === undefined) {
    throw new UsageError('pacha.host is not set: name the master in the config (pacha.host = master.example.com, or file:// for a local folder)');
  }
  if (isLocalMaster(config)) return new LocalTransport(`file://${config.hostsPath}`);
  // ssh2 is loaded here, not with this module: `pacha status` and others name the master
  // (isLocalMaster) without connecting to it.
  const [{ SftpTransport }, { resolveAuth }] = await Promise.all([import('./sftp.ts'), import('./ssh-auth.ts')]);
  const env = opts.env ?? process.env;
  const envTimeout = env.PACHA_SSH_TIMEOUT ? Number(env.PACHA_SSH_TIMEOUT) * 1000 : undefined;
  if (envTimeout !== undefined && !(envTimeout > 0)) throw new UsageError(`PACHA_SSH_TIMEOUT=${env.PACHA_SSH_TIMEOUT}: accepted: seconds, more than 0`);
  return SftpTransport.connect({
    host: config.host,
    port: config.sshPort,
    user: config.sshUser,
    auth: resolveAuth(config, env),
    knownHostsFile: config.knownHostsFile,
    log,
    connectTimeoutMs: opts.connectTimeoutMs ?? envTimeout,
    opTimeoutMs: opts.opTimeoutMs ?? envTimeout,
  });
}
