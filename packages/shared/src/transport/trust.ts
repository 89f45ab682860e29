import type { PachaConfig } from '../config.ts';
import { PachaError, UsageError } from '../errors.ts';
import { appendKnownHost, checkHostKey, knownHostsLine, knownHostsName, readKnownHosts, type HostKeyStatus } from './known-hosts.ts';
import { isLocalMaster } from './open.ts';
import { probeHostKey } from './sftp.ts';

// `pacha trust-master`: fetch the master's host key, show it, and after confirmation record it
// in known_hosts. A key that differs from a recorded one is never added next to it: the
// operator removes the old line first, as with ssh(1).

export interface TrustResult {
  master: string;
  knownHostsFile: string;
  keyType: string;
  fingerprint: string;
  /** What known_hosts said before: match (nothing to do), unknown (recorded if confirmed). */
  status: HostKeyStatus;
  recorded: boolean;
  line?: string;
}

export interface TrustOptions {
  /** Asked with the prompt text when the key is unknown; resolves to the answer. */
  confirm: (question: string) => Promise<boolean>;
  /** Shown before the question. */
  show: (text: string) => void;
  timeoutMs?: number;
}

export async function trustMaster(config: PachaConfig, opts: TrustOptions): Promise<TrustResult> {
  if (config.host === undefined) throw new UsageError('pacha.host is not set: name the master in the config first');
  if (isLocalMaster(config)) throw new UsageError(`pacha.host is ${config.host}: a local folder has no host key to trust`);
  const host = config.host;
  const port = config.sshPort;
  const file = config.knownHostsFile;
  const known = readKnownHosts(file);
  const key = await probeHostKey(host, port, opts.timeoutMs, known);
  const check = checkHostKey(known, host, port, key.blob);
  const base = { master: knownHostsName(host, port), knownHostsFile: file, keyType: key.type, fingerprint: key.fingerprint, status: check.status };
  if (check.status === 'match') return { ...base, recorded: false };
  if (check.status === 'revoked') {
    throw new PachaError(`the master ${host}:${port} presents the ${key.type} key ${key.fingerprint}, which ${file}:${check.lines[0]} marks @revoked: not recording it`);
  }
  if (check.status === 'changed') {
    throw new PachaError(
      `the master ${host}:${port} presents the ${key.type} key ${key.fingerprint}, but ${file} records another key for it (line ${check.lines.join(', ')}): not adding a second one`,
      { hint: `if the master really has a new key (compare the fingerprint with the master's operator), delete line ${check.lines.join(', ')} of ${file} and run pacha trust-master again` },
    );
  }
  opts.show(`The master ${host}:${port} presents this host key:\n  ${key.type} ${key.fingerprint}\nCompare it with the master's own (pacha-master serve logs it; ssh-keygen -lf HOSTKEY.pub on the master).`);
  if (!(await opts.confirm(`Record this key in ${file}? [y/N] `))) return { ...base, recorded: false };
  const line = knownHostsLine(host, port, key.blob);
  appendKnownHost(file, line);
  return { ...base, recorded: true, line };
}
