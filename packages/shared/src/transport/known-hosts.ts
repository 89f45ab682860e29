import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { errnoOf } from '../errors.ts';

// OpenSSH known_hosts, read the way ssh(1) reads it, so the agent and `ssh` agree on what the
// master's key is: plain names, comma-separated lists, `[host]:port` for non-22 ports, hashed
// `|1|salt|hash` names, `*`/`?` wildcards, `!negation`, and the @revoked marker (refuse).
// @cert-authority lines are skipped: pacha does not accept host certificates.

export type HostKeyStatus = 'match' | 'unknown' | 'changed' | 'revoked';

export interface HostKeyCheck {
  status: HostKeyStatus;
  /** 1-based line numbers of the entries for this host (changed) or the matching entry. */
  lines: number[];
}

/** The name known_hosts uses for a host and port: "host" on 22, "[host]:port" otherwise. */
export function knownHostsName(host: string, port: number): string {
  return port === 22 ? host : `[${host}]:${port}`;
}

/** The key type named inside an SSH public key blob ("ssh-ed25519", "ecdsa-sha2-nistp256", ...). */
export function keyTypeOfBlob(blob: Buffer): string {
  if (blob.length < 4) return 'unknown';
  const len = blob.readUInt32BE(0);
  if (len > blob.length - 4 || len > 64) return 'unknown';
  return blob.subarray(4, 4 + len).toString('latin1');
}

/** OpenSSH-style fingerprint: "SHA256:" + base64 of the SHA-256 of the key blob, without padding. */
export function fingerprintSha256(blob: Buffer): string {
  return 'SHA256:' + crypto.createHash('sha256').update(blob).digest('base64').replace(/=+$/, '');
}

/** A line to append to known_hosts for this host, port and key. */
export function knownHostsLine(host: string, port: number, blob: Buffer): string {
  return `${knownHostsName(host, port)} ${keyTypeOfBlob(blob)} ${blob.toString('base64')}`;
}

function globToRegExp(pattern: string): RegExp {
  let re = '';
  for (const ch of pattern) {
    if (ch === '*') re += '.*';
    else if (ch === '?') re += '.';
    else re += ch.replace(/[.+^${}()|[\]\\]/g, '\\$&');
  }
  return new RegExp(`^${re}$`, 'i');
}

function hashedMatches(entry: string, name: string): boolean {
  // |1|base64(salt)|base64(HMAC-SHA1(salt, name))
  const parts = entry.split('|');
  if (parts.length !== 4 || parts[1] !== '1') return false;
  const salt = Buffer.from(parts[2], 'base64');
  const want = Buffer.from(parts[3], 'base64');
  const got = crypto.createHmac('sha1', salt).update(name).digest();
  return want.length === got.length && crypto.timingSafeEqual(want, got);
}

/** Does a host-pattern field ("a,b,[c]:2222,!d" or "|1|..|..") name this host? */
export function hostFieldMatches(field: string, name: string): boolean {
  if (field.startsWith('|')) return hashedMatches(field, name);
  let positive = false;
  for (const raw of field.split(',')) {
    if (raw.length === 0) continue;
    const negated = raw.startsWith('!');
    const pattern = negated ? raw.slice(1) : raw;
    if (globToRegExp(pattern).test(name)) {
      if (negated) return false;
      positive = true;
    }
  }
  return positive;
}

/** Check a presented host key against the text of a known_hosts file. */
export function checkHostKey(text: string, host: string, port: number, blob: Buffer): HostKeyCheck {
  const name = knownHostsName(host, port);
  const hostLines: number[] = [];
  let matched: number | null = null;
  const lines = text.split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i].trim();
    if (line.length === 0 || line.startsWith('#')) continue;
    const fields = line.split(/\s+/);
    let marker: string | null = null;
    if (fields[0].startsWith('@')) marker = fields.shift()!;
    if (fields.length < 3) continue;
    const [hostField, , keyB64] = fields;
    const keyBlob = Buffer.from(keyB64, 'base64'); // never throws: bad characters are skipped
    const sameKey = keyBlob.equals(blob);
    if (marker === '@revoked') {
      // A revoked key is refused for every host, whatever the host field says.
      if (sameKey) return { status: 'revoked', lines: [i + 1] };
      continue;
    }
    if (marker !== null) continue;
    if (!hostFieldMatches(hostField, name)) continue;
    hostLines.push(i + 1);
    if (sameKey && matched === null) matched = i + 1;
  }
  if (matched !== null) return { status: 'match', lines: [matched] };
  return { status: hostLines.length > 0 ? 'changed' : 'unknown', lines: hostLines };
}

/** Read a known_hosts file; a missing file is empty (every key is then unknown). */
export function readKnownHosts(file: string): string {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch (e) {
    if (errnoOf(e) === 'ENOENT') return '';
    throw e;
  }
}

/** Append one entry, creating the file (0600) and its folder (0700) when missing. */
export function appendKnownHost(file: string, line: string): void {
  fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  const cur = readKnownHosts(file);
  const prefix = cur.length > 0 && !cur.endsWith('\n') ? '\n' : '';
  fs.appendFileSync(file, `${prefix}${line}\n`, { mode: 0o600 });
}
