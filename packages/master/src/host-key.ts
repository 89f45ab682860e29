import fs from 'node:fs';
import path from 'node:path';
import ssh2 from 'ssh2';
import { PachaError } from '@pacha/shared/errors';
import { generateEd25519 } from '@pacha/shared/transport/ed25519';
import { fingerprintSha256 } from '@pacha/shared/transport/known-hosts';

// The server's identity: an ed25519 key created on first start and kept (0600), so the agents'
// known_hosts entries stay valid across restarts. The .pub beside it is for operators.

export interface HostKey {
  privateKey: Buffer;
  publicLine: string;
  fingerprint: string;
  created: boolean;
}

export function loadOrCreateHostKey(file: string): HostKey {
  let created = false;
  if (!fs.existsSync(file)) {
    fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
    const pair = generateEd25519('pacha-master');
    // wx: two servers starting at once must not overwrite each other's key.
    try {
      fs.writeFileSync(file, pair.private, { mode: 0o600, flag: 'wx' });
      fs.writeFileSync(`${file}.pub`, pair.public + '\n', { mode: 0o644 });
      created = true;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    }
  }
  const privateKey = fs.readFileSync(file);
  const st = fs.statSync(file);
  if ((st.mode & 0o077) !== 0) fs.chmodSync(file, 0o600);
  const parsed = ssh2.utils.parseKey(privateKey);
  if (parsed instanceof Error) throw new PachaError(`host key ${file} cannot be read: ${parsed.message} (accepted: an unencrypted OpenSSH private key)`);
  const key = Array.isArray(parsed) ? parsed[0] : parsed;
  const blob = key.getPublicSSH();
  const publicLine = `${key.type} ${blob.toString('base64')}`;
  if (!fs.existsSync(`${file}.pub`)) fs.writeFileSync(`${file}.pub`, publicLine + ' pacha-master\n', { mode: 0o644 });
  return { privateKey, publicLine, fingerprint: fingerprintSha256(blob), created };
}
