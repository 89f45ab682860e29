import fs from 'node:fs';
import SftpClient from 'ssh2-sftp-client';
import ssh2 from 'ssh2';
import type { ConnectConfig, SFTPWrapper, Stats } from 'ssh2';
import { PachaError } from '../errors.ts';
import type { Logger } from '../log.ts';
import type { RemoteEntry, RemoteStat, Transport } from './transport.ts';
import { checkHostKey, fingerprintSha256, keyTypeOfBlob, knownHostsName, readKnownHosts, hostFieldMatches } from './known-hosts.ts';
import type { SshAuth } from './ssh-auth.ts';

// The agent's way to the master over SFTP: OpenSSH's sftp-server or `pacha-master serve`.
// The master's host key is always checked against known_hosts before anything is sent.
// Every operation has a deadline (an inactivity deadline for transfers), so a master that
// stops answering fails the operation instead of hanging it; the connection is then dropped.

export const DEFAULT_CONNECT_TIMEOUT_MS = 20_000;
export const DEFAULT_OP_TIMEOUT_MS = 60_000;

export interface SftpOptions {
  host: string;
  port: number;
  user: string;
  auth: SshAuth;
  knownHostsFile: string;
  log: Logger;
  connectTimeoutMs?: number;
  /** Per operation; for uploads and downloads, the longest time without progress. */
  opTimeoutMs?: number;
}

/** The master's host key was not accepted: never retried, shown to the operator as is. */
export class HostKeyError extends PachaError {
  readonly fingerprint: string;
  readonly keyType: string;
  constructor(message: string, fingerprint: string, keyType: string, hint: string) {
    super(message, { hint });
    this.name = 'HostKeyError';
    this.fingerprint = fingerprint;
    this.keyType = keyType;
  }
}

const HOST_KEY_ALGOS = ['ssh-ed25519', 'ecdsa-sha2-nistp256', 'ecdsa-sha2-nistp384', 'ecdsa-sha2-nistp521', 'rsa-sha2-512', 'rsa-sha2-256', 'ssh-rsa'];

/** Ask for the key types known_hosts already has for this host first (as ssh(1) does), so a master with several keys presents the recorded one. */
function hostKeyAlgorithms(knownHostsText: string, host: string, port: number): string[] {
  const name = knownHostsName(host, port);
  const preferred: string[] = [];
  for (const line of knownHostsText.split(/\r?\n/)) {
    const f = line.trim().split(/\s+/);
    if (f.length < 3 || f[0].startsWith('#') || f[0].startsWith('@')) continue;
    if (!hostFieldMatches(f[0], name)) continue;
    const algos = f[1] === 'ssh-rsa' ? ['rsa-sha2-512', 'rsa-sha2-256', 'ssh-rsa'] : [f[1]];
    for (const a of algos) if (HOST_KEY_ALGOS.includes(a) && !preferred.includes(a)) preferred.push(a);
  }
  return [...preferred, ...HOST_KEY_ALGOS.filter((a) => !preferred.includes(a))];
}

function hostKeyError(status: 'unknown' | 'changed' | 'revoked', host: string, port: number, blob: Buffer, file: string, lines: number[]): HostKeyError {
  const fp = fingerprintSha256(blob);
  const type = keyTypeOfBlob(blob);
  const where = `${host}:${port}`;
  if (status === 'unknown') {
    return new HostKeyError(
      `the master ${where} is not known: its ${type} key ${fp} is not in ${file}`,
      fp,
      type,
      `compare the fingerprint with the one the master shows (pacha-master serve logs it; ssh-keygen -lf on its host key), then run: pacha trust-master`,
    );
  }
  if (status === 'revoked') {
    return new HostKeyError(`the master ${where} presented the ${type} key ${fp}, which ${file}:${lines[0]} marks @revoked: refusing to connect`, fp, type, 'the master must get a new host key; then record it with pacha trust-master');
  }
  return new HostKeyError(
    `HOST KEY CHANGED for the master ${where}: it presented the ${type} key ${fp}, which is not the key recorded in ${file} (line ${lines.join(', ')}). Someone may be intercepting the connection, or the master was reinstalled; refusing to connect`,
    fp,
    type,
    `if the master was reinstalled and ${fp} is its new key, delete line ${lines.join(', ')} of ${file} and run: pacha trust-master`,
  );
}

/** SFTP status codes as the errno codes LocalTransport's callers already know. */
const SFTP_ERRNO: Record<number, string> = { 2: 'ENOENT', 3: 'EACCES', 4: 'EIO', 8: 'ENOTSUP' };

function sftpError(op: string, p: string, e: unknown): Error {
  const err = e as Error & { code?: unknown };
  if (err instanceof PachaError) return err;
  let code = typeof err.code === 'number' ? SFTP_ERRNO[err.code] ?? 'EIO' : typeof err.code === 'string' ? err.code : 'EIO';
  // ssh2-sftp-client checks before fastGet and reports a missing file as a "bad path".
  if (code === 'ERR_BAD_PATH' && /No such file/i.test(err.message)) code = 'ENOENT';
  const out = new Error(`sftp ${op} ${p}: ${err.message}`) as NodeJS.ErrnoException;
  out.code = code;
  return out;
}

function toStat(a: Stats | { mode: number; size: number; mtime: number }): RemoteStat {
  const t = a.mode & fs.constants.S_IFMT;
  return {
    type: t === fs.constants.S_IFREG ? 'file' : t === fs.constants.S_IFDIR ? 'dir' : t === fs.constants.S_IFLNK ? 'symlink' : 'other',
    size: a.size,
    mtimeMs: a.mtime * 1000,
    mode: a.mode & 0o7777,
  };
}

function ssh2Config(opts: SftpOptions, knownText: string, onKey: (blob: Buffer) => boolean): ConnectConfig {
  return {
    host: opts.host,
    port: opts.port,
    username: opts.user,
    privateKey: opts.auth.privateKey,
    passphrase: opts.auth.passphrase,
    agent: opts.auth.agent,
    readyTimeout: opts.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS,
    keepaliveInterval: 10_000,
    keepaliveCountMax: 3,
    algorithms: { serverHostKey: hostKeyAlgorithms(knownText, opts.host, opts.port) as any },
    hostVerifier: (key: Buffer) => onKey(key),
  };
}

export class SftpTransport implements Transport {
  readonly description: string;
  private readonly client: SftpClient;
  private readonly sftp: SFTPWrapper;
  private readonly opTimeoutMs: number;
  private readonly log: Logger;
  private posixRename: boolean | null = null;
  private broken: Error | null = null;

  private constructor(client: SftpClient, sftp: SFTPWrapper, opts: SftpOptions) {
    this.client = client;
    this.sftp = sftp;
    this.opTimeoutMs = opts.opTimeoutMs ?? DEFAULT_OP_TIMEOUT_MS;
    this.log = opts.log;
    this.description = `sftp://${opts.user}@${opts.host}:${opts.port}`;
    (client as unknown as { client: ssh2.Client }).client.on('close', () => {
      this.broken ??= new PachaError(`the connection to the master ${opts.host}:${opts.port} was closed`);
    });
  }

  static async connect(opts: SftpOptions): Promise<SftpTransport> {
    const knownText = readKnownHosts(opts.knownHostsFile);
    let refusal: HostKeyError | null = null;
    // Our own event callbacks: the library's defaults print to stdout.
    const client = new SftpClient(`pacha-${opts.host}`, {
      error: (e: Error) => opts.log.debug(`ssh: ${e.message}`),
      end: () => opts.log.debug('ssh: connection ended'),
      close: () => opts.log.debug('ssh: connection closed'),
    } as any);
    const cfg = ssh2Config(opts, knownText, (blob) => {
      const check = checkHostKey(knownText, opts.host, opts.port, blob);
      if (check.status === 'match') return true;
      refusal = hostKeyError(check.status, opts.host, opts.port, blob, opts.knownHostsFile, check.lines);
      return false;
    });
    const where = `${opts.user}@${opts.host}:${opts.port}`;
    // SFTP is request/response: without TCP_NODELAY every small request waits for a delayed ACK.
    const raw = (client as unknown as { client: ssh2.Client }).client;
    raw.on('connect', () => raw.setNoDelay(true));
    opts.log.debug(`connecting to ${where} with ${opts.auth.source}`);
    let sftp: SFTPWrapper;
    try {
      // The connect itself is bounded by readyTimeout; this deadline covers the SFTP start too.
      sftp = await deadline(client.connect(cfg as any), (opts.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS) + 5000, () => destroy(client), `connecting to ${where}`);
    } catch (e) {
      destroy(client);
      if (refusal) throw refusal;
      const msg = (e as Error).message;
      if (/authentication methods failed|All configured authentication/i.test(msg)) {
        throw new PachaError(`the master ${where} refused ${opts.auth.source}`, {
          hint: `authorise this host's public key on the master (pacha-master authorize ${opts.user} KEY.pub, or its authorized_keys with OpenSSH)`,
        });
      }
      throw new PachaError(`cannot connect to the master ${where}: ${msg.replace(/^connect: /, '')}`, { cause: e });
    }
    opts.log.debug(`connected to ${where}`);
    return new SftpTransport(client, sftp, opts);
  }

  /** Run one SFTP call with the operation deadline; a missed deadline drops the connection. */
  private op<T>(what: string, p: string, fn: (sftp: SFTPWrapper, cb: (err: Error | null | undefined, v?: T) => void) => void): Promise<T> {
    if (this.broken) return Promise.reject(this.broken);
    const call = new Promise<T>((resolve, reject) => {
      fn(this.sftp, (err, v) => (err ? reject(sftpError(what, p, err)) : resolve(v as T)));
    });
    return deadline(call, this.opTimeoutMs, () => this.fail(what), `${what} ${p} on ${this.description}`);
  }

  private fail(what: string): void {
    this.broken ??= new PachaError(`the master ${this.description} stopped answering (during ${what}); connection dropped`);
    destroy(this.client);
  }

  async stat(p: string): Promise<RemoteStat | null> {
    try {
      return toStat(await this.op<Stats>('stat', p, (s, cb) => s.lstat(p, cb)));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw e;
    }
  }

  async list(dir: string): Promise<RemoteEntry[]> {
    const entries = await this.op<{ filename: string; attrs: Stats }[]>('list', dir, (s, cb) => s.readdir(dir, cb as any));
    return entries.filter((e) => e.filename !== '.' && e.filename !== '..').map((e) => ({ name: e.filename, ...toStat(e.attrs) }));
  }

  readFile(p: string): Promise<Buffer> {
    return this.op<Buffer>('read', p, (s, cb) => s.readFile(p, cb as any));
  }

  async writeFile(p: string, data: Uint8Array | string): Promise<void> {
    await this.op<void>('write', p, (s, cb) => s.writeFile(p, typeof data === 'string' ? data : Buffer.from(data), cb as any));
  }

  async createExclusive(p: string, data: Uint8Array | string): Promise<boolean> {
    let handle: Buffer;
    try {
      handle = await this.op<Buffer>('create', p, (s, cb) => s.open(p, 'wx', cb as any));
    } catch (e) {
      // SFTP v3 has no "exists" status: OpenSSH answers FAILURE. Tell by looking.
      if ((e as NodeJS.ErrnoException).code === 'EIO' && (await this.stat(p)) !== null) return false;
      throw e;
    }
    const buf = typeof data === 'string' ? Buffer.from(data) : Buffer.from(data);
    try {
      if (buf.length > 0) await this.op<void>('write', p, (s, cb) => s.write(handle, buf, 0, buf.length, 0, cb as any));
    } finally {
      await this.op<void>('close', p, (s, cb) => s.close(handle, cb as any));
    }
    return true;
  }

  async download(remote: string, localFile: string): Promise<void> {
    // fastGet (not get): it resolves only when the local file is complete.
    await this.transfer('download', remote, (step) =>
      this.client.fastGet(remote, localFile, { step, mode: 0o600 } as any),
    );
  }

  async upload(localFile: string, remote: string): Promise<void> {
    await this.transfer('upload', remote, (step) => this.client.fastPut(localFile, remote, { step, mode: 0o644 } as any));
  }

  /** A transfer may take long; it fails only after opTimeoutMs without progress. */
  private async transfer(what: string, p: string, start: (step: () => void) => Promise<unknown>): Promise<void> {
    if (this.broken) throw this.broken;
    let timer: NodeJS.Timeout | undefined;
    const stalled = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        this.fail(what);
        reject(new PachaError(`${what} ${p}: no progress for ${this.opTimeoutMs / 1000}s from ${this.description}; connection dropped`));
      }, this.opTimeoutMs);
    });
    try {
      await Promise.race([start(() => timer?.refresh()).catch((e) => Promise.reject(sftpError(what, p, e))), stalled]);
    } finally {
      clearTimeout(timer);
    }
  }

  async rename(from: string, to: string): Promise<void> {
    // posix-rename@openssh.com replaces the target atomically; plain SFTP v3 RENAME refuses an
    // existing target on OpenSSH. pacha-master serve does not advertise the extension and its
    // plain RENAME replaces atomically.
    if (this.posixRename !== false) {
      try {
        await this.op<void>('rename', from, (s, cb) => s.ext_openssh_rename(from, to, cb as any));
        this.posixRename = true;
        return;
      } catch (e) {
        if (!/does not support/i.test((e as Error).message)) throw e;
        this.posixRename = false;
      }
    }
    await this.op<void>('rename', from, (s, cb) => s.rename(from, to, cb as any));
  }

  async mkdirp(p: string): Promise<void> {
    const st = await this.stat(p);
    if (st?.type === 'dir') return;
    if (st) throw Object.assign(new Error(`sftp mkdir ${p}: exists and is not a directory`), { code: 'EEXIST' });
    const parent = p.replace(/\/+[^/]+\/*$/, '') || '/';
    if (parent !== p) await this.mkdirp(parent);
    try {
      await this.op<void>('mkdir', p, (s, cb) => s.mkdir(p, cb as any));
    } catch (e) {
      if ((await this.stat(p))?.type !== 'dir') throw e; // lost a race with another writer: fine
    }
  }

  async remove(p: string): Promise<void> {
    try {
      await this.op<void>('remove', p, (s, cb) => s.unlink(p, cb as any));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    }
  }

  async close(): Promise<void> {
    if (this.broken) {
      destroy(this.client);
      return;
    }
    this.broken = new PachaError(`the connection to ${this.description} is closed`);
    await deadline(this.client.end().then(() => undefined), 5000, () => destroy(this.client), 'closing').catch(() => destroy(this.client));
    this.log.debug(`closed ${this.description}`);
  }
}

function destroy(client: SftpClient): void {
  try {
    (client as unknown as { client: ssh2.Client }).client.destroy();
  } catch {
    // already gone
  }
}

/** Reject after ms (calling onTimeout first) unless p settles. */
function deadline<T>(p: Promise<T>, ms: number, onTimeout: () => void, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const t = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      onTimeout();
      reject(new PachaError(`timed out after ${ms / 1000}s: ${what}`));
    }, ms);
  });
  return Promise.race([p, t]).finally(() => clearTimeout(timer));
}

export interface PresentedKey {
  blob: Buffer;
  type: string;
  fingerprint: string;
}

/** Connect only far enough to see the master's host key (for `pacha trust-master`); nothing is authenticated or sent. */
export function probeHostKey(host: string, port: number, timeoutMs = DEFAULT_CONNECT_TIMEOUT_MS, preferred = ''): Promise<PresentedKey> {
  return new Promise((resolve, reject) => {
    const conn = new ssh2.Client();
    let seen: PresentedKey | null = null;
    const done = () => {
      conn.removeAllListeners();
      conn.on('error', () => {});
      conn.destroy();
    };
    conn.on('error', (e) => {
      done();
      if (seen) resolve(seen);
      else reject(new PachaError(`cannot reach the master ${host}:${port}: ${e.message}`));
    });
    conn.on('ready', () => {
      done();
      if (seen) resolve(seen);
    });
    conn.connect({
      host,
      port,
      username: 'pacha-probe',
      readyTimeout: timeoutMs,
      algorithms: { serverHostKey: hostKeyAlgorithms(preferred, host, port) as any },
      hostVerifier: (key: Buffer) => {
        seen = { blob: Buffer.from(key), type: keyTypeOfBlob(key), fingerprint: fingerprintSha256(key) };
        // Refuse: we only wanted the key. The refusal ends the handshake.
        setImmediate(() => {
          done();
          resolve(seen!);
        });
        return false;
      },
    });
  });
}
