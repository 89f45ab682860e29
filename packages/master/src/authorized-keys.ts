import fs from 'node:fs';
import path from 'node:path';
import ssh2 from 'ssh2';
import { HOST_TREE, checkHostName, isValidHostName } from '@pacha/shared/master-tree';
import { PachaError, UsageError } from '@pacha/shared/errors';
import { fingerprintSha256 } from '@pacha/shared/transport/known-hosts';
import { hostDir, hostKeysFile, type MasterLayout } from './layout.ts';

// Which public keys may log in as which host. The list lives in <keys-dir>/<host>.pub, outside
// the host's folder, so a host cannot add keys for itself or for anyone else.

type ParsedKey = ssh2.ParsedKey;

/** Parse one public key (OpenSSH "type base64 comment" or RFC 4716); refuse private keys. */
export function parsePublicKey(text: string, what: string): ParsedKey {
  const parsed = ssh2.utils.parseKey(text);
  if (parsed instanceof Error) {
    throw new UsageError(`${what} is not an SSH public key (${parsed.message}; accepted: an OpenSSH .pub line such as "ssh-ed25519 AAAA... comment")`);
  }
  const key = Array.isArray(parsed) ? parsed[0] : parsed;
  if (key.isPrivateKey()) {
    throw new UsageError(`${what} is a private key: pass the public key (the .pub file) instead; the private key must stay on the host`);
  }
  return key;
}

export interface AuthorizeResult {
  host: string;
  keysFile: string;
  fingerprint: string;
  type: string;
  added: boolean;
}

/** `pacha-master authorize HOST PUBKEY-FILE`: validate, record the key, create the host's folder. */
export function authorizeHost(layout: MasterLayout, host: string, pubKeyText: string, what = 'the key'): AuthorizeResult {
  checkHostName(host, 'a usable host name (it is also the SSH user name)');
  const lines = pubKeyText.split(/\r?\n/).map((l) => l.trim()).filter((l) => l.length > 0 && !l.startsWith('#'));
  const key = parsePublicKey(pubKeyText, what);
  if (lines.length !== 1 && !pubKeyText.includes('---- BEGIN SSH2 PUBLIC KEY ----')) {
    throw new UsageError(`${what} holds ${lines.length} keys: authorise exactly one public key per call`);
  }
  const blob = key.getPublicSSH();
  const line = `${key.type} ${blob.toString('base64')} ${key.comment || host}`.trim();
  const keysFile = hostKeysFile(layout, host);
  fs.mkdirSync(layout.keysDir, { recursive: true, mode: 0o700 });
  const existing = loadHostKeys(layout, host);
  const added = !existing.some((k) => k.getPublicSSH().equals(blob));
  if (added) fs.appendFileSync(keysFile, line + '\n', { mode: 0o600 });
  const dir = hostDir(layout, host);
  for (const sub of ['', HOST_TREE.pre, HOST_TREE.post]) fs.mkdirSync(path.join(dir, sub), { recursive: true, mode: 0o755 });
  return { host, keysFile, fingerprint: fingerprintSha256(blob), type: key.type, added };
}

/** The keys a host may log in with (none when the file does not exist). Read at every login, so authorize needs no restart. */
export function loadHostKeys(layout: MasterLayout, host: string): ParsedKey[] {
  if (!isValidHostName(host)) return [];
  let text: string;
  try {
    text = fs.readFileSync(hostKeysFile(layout, host), 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw new PachaError(`cannot read the keys of ${host}: ${(e as Error).message}`);
  }
  const keys: ParsedKey[] = [];
  for (const l of text.split(/\r?\n/)) {
    const line = l.trim();
    if (line.length === 0 || line.startsWith('#')) continue;
    const parsed = ssh2.utils.parseKey(line);
    if (parsed instanceof Error) continue;
    keys.push(Array.isArray(parsed) ? parsed[0] : parsed);
  }
  return keys;
}
