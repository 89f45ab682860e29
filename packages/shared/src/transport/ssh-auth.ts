import fs from 'node:fs';
import ssh2 from 'ssh2';
import type { PachaConfig } from '../config.ts';
import { PachaError } from '../errors.ts';
import { registerSecret } from '../log.ts';
import { expandHome, hostPath } from '../paths.ts';
import { keyModeProblem } from './key-mode.ts';

// How the agent proves who it is to the master, in the order of the design:
// pacha.ssh.key, else ssh-agent (SSH_AUTH_SOCK), else ~/.ssh/id_ed25519, id_ecdsa, id_rsa
// (home resolved under the root dir). An encrypted key needs PACHA_SSH_PASSPHRASE; the
// passphrase is handed to ssh2 and never logged or put in a message.

export const DEFAULT_KEY_NAMES = ['id_ed25519', 'id_ecdsa', 'id_rsa'];

export interface SshAuth {
  privateKey?: Buffer;
  passphrase?: string;
  agent?: string;
  /** For messages: "key /etc/pacha/id_ed25519", "ssh-agent". */
  source: string;
}

export function resolveAuth(config: PachaConfig, env: NodeJS.ProcessEnv = process.env): SshAuth {
  const passphrase = env.PACHA_SSH_PASSPHRASE && env.PACHA_SSH_PASSPHRASE.length > 0 ? env.PACHA_SSH_PASSPHRASE : undefined;
  registerSecret(passphrase);
  if (config.sshKeyFile !== undefined) {
    return loadKey(config.sshKeyFile, passphrase, 'pacha.ssh.key');
  }
  if (env.SSH_AUTH_SOCK && env.SSH_AUTH_SOCK.length > 0) {
    return { agent: env.SSH_AUTH_SOCK, source: `ssh-agent (${env.SSH_AUTH_SOCK})` };
  }
  const tried: string[] = [];
  for (const name of DEFAULT_KEY_NAMES) {
    const file = hostPath(expandHome(`~/.ssh/${name}`, env), config.root);
    tried.push(file);
    if (fs.existsSync(file)) return loadKey(file, passphrase, 'default key');
  }
  throw new PachaError(`no SSH key to log in to the master: pacha.ssh.key is not set, SSH_AUTH_SOCK is not set, and none of ${tried.join(', ')} exists`, {
    hint: 'set pacha.ssh.key to a private key file whose public key the master has authorised',
  });
}

function loadKey(file: string, passphrase: string | undefined, what: string): SshAuth {
  let data: Buffer;
  let mode: number;
  try {
    const fd = fs.openSync(file, 'r');
    try {
      mode = fs.fstatSync(fd).mode & 0o7777;
      data = fs.readFileSync(fd);
    } finally {
      fs.closeSync(fd);
    }
  } catch (e) {
    throw new PachaError(`cannot read the SSH key ${file} (${what}): ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  const unsafe = keyModeProblem(file, mode);
  if (unsafe) throw new PachaError(`the SSH key ${file} (${what}) ${unsafe}`);
  const parsed = ssh2.utils.parseKey(data, passphrase);
  if (parsed instanceof Error) {
    if (/encrypted|passphrase|bad decrypt/i.test(parsed.message)) {
      throw new PachaError(
        passphrase === undefined
          ? `the SSH key ${file} is encrypted and no passphrase was given`
          : `the SSH key ${file} could not be decrypted with PACHA_SSH_PASSPHRASE`,
        { hint: 'set PACHA_SSH_PASSPHRASE in the environment, load the key into ssh-agent, or use a key without passphrase readable only by root' },
      );
    }
    throw new PachaError(`the SSH key ${file} cannot be used: ${parsed.message} (accepted: an OpenSSH, PEM or PuTTY private key)`);
  }
  const key = Array.isArray(parsed) ? parsed[0] : parsed;
  if (!key.isPrivateKey()) throw new PachaError(`${file} is a public key: pacha.ssh.key names the private key (the file without .pub)`);
  return { privateKey: data, passphrase, source: `key ${file}` };
}
