import fs from 'node:fs';
import type net from 'node:net';
import ssh2 from 'ssh2';
import type { ClientErrorExtensions, ConnectConfig, FileEntryWithStats, ServerHostKeyAlgorithm, SFTPWrapper, Stats } from 'ssh2';
import { AuthError, ConnectionError, ExistsError, HostKeyError, NotFoundError, PachaError, PermissionError, RemoteError, UnsupportedError } from '../errors.ts';
import type { Logger } from '../log.ts';
import type { RemoteEntry, RemoteStat, Transport } from './transport.ts';
import { checkHostKey, fingerprintSha256, keyTypeOfBlob, knownHostsName, readKnownHosts, hostFieldMatches } from './known-hosts.ts';
import type { SshAuth } from './ssh-auth.ts';
import { CoalescingSocket } from './coalescing-socket.ts';

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

const HOST_KEY_ALGOS: ServerHostKeyAlgorithm[] = ['ssh-ed25519', 'ecdsa-sha2-nistp256', 'ecdsa-sha2-nistp384', 'ecdsa-sha2-nistp521', 'rsa-sha2-512', 'rsa-sha2-256', 'ssh-rsa'];

/** Ask for the key types known_hosts already has for this host first (as ssh(1) does), so a master with several keys presents the recorded one. */
function hostKeyAlgorithms(knownHostsText: string, host: string, port: number): ServerHostKeyAlgorithm[] {
  const name = knownHostsName(host, port);
  const preferred: ServerHostKeyAlgorithm[] = [];
  for (const line of knownHostsText.split(/\r?\n/)) {
    const f = line.trim().split(/\s+/);
    if (f.length < 3 || f[0].startsWith('#') || f[0].startsWith('@')) continue;
    if (!hostFieldMatches(f[0], name)) continue;
    const algos = f[1] === 'ssh-rsa' ? ['rsa-sha2-512', 'rsa-sha2-256', 'ssh-rsa'] : [f[1]];
    for (const a of HOST_KEY_ALGOS) if (algos.includes(a) && !preferred.includes(a)) preferred.push(a);
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

/**
 * Write requests of an upload: OpenSSH's sftp-server takes up to 256 KiB per write
 * (limits@openssh.com says 261120 bytes of data), one status reply each, where ssh2's default of
 * 32 KiB has eight replies to decrypt for as much data. ssh2 splits a request over a server's
 * smaller limit (pacha-master serve, which does not advertise one) by itself. 16 in flight
 * (4 MiB) cover OpenSSH's 2 MiB channel window.
 */
const UPLOAD_REQUESTS = { chunkSize: 261_120, concurrency: 16 };
/**
 * Read requests of a download (the rebuild's fetch of packs): the same size and number, for the
 * same reason; one request per 255 KiB instead of eight. ssh2 splits a request over a server's
 * limit, and a short read is asked again for the rest.
 */
const DOWNLOAD_REQUESTS = { chunkSize: 261_120, concurrency: 16 };

/** SFTP status codes (draft-ietf-secsh-filexfer-02), as ssh2 puts them in `code`. */
const SFTP_NO_SUCH_FILE = 2;
const SFTP_PERMISSION_DENIED = 3;
const SFTP_NO_CONNECTION = 6;
const SFTP_CONNECTION_LOST = 7;
const SFTP_OP_UNSUPPORTED = 8;
/** Errors of the local socket: the network failed, not the request. */
const SOCKET_CODES = new Set([
  'ECONNREFUSED', 'ECONNRESET', 'ECONNABORTED', 'ETIMEDOUT', 'EPIPE', 'EHOSTUNREACH', 'ENETUNREACH',
  'ENETDOWN', 'EAI_AGAIN', 'ENOTCONN', 'ESHUTDOWN',
]);

/** The transport boundary: what ssh2 reported for one operation, as the error of its kind. */
function sftpError(op: string, p: string, e: unknown): PachaError {
  if (e instanceof PachaError) return e;
  const err = e instanceof Error ? e : new Error(String(e));
  const code = 'code' in err ? err.code : undefined;
  const msg = `sftp ${op} ${p}: ${err.message}`;
  const o = { cause: err };
  if (typeof code === 'number') {
    // A status the master answered with.
    if (code === SFTP_NO_SUCH_FILE) return new NotFoundError(msg, o);
    if (code === SFTP_PERMISSION_DENIED) return new PermissionError(msg, o);
    if (code === SFTP_NO_CONNECTION || code === SFTP_CONNECTION_LOST) return new ConnectionError(msg, o);
    if (code === SFTP_OP_UNSUPPORTED) return new UnsupportedError(msg, o);
    return new RemoteError(msg, o);
  }
  // A system error: the socket (transient), or the local file of a transfer (not).
  if (typeof code === 'string') return SOCKET_CODES.has(code) ? new ConnectionError(msg, o) : new PachaError(msg, o);
  // No status at all: ssh2 fails the requests in flight so when the channel or connection ends.
  return new ConnectionError(msg, o);
}

/** Why a connection could not be opened, by ssh2's `level` of the error. */
function connectError(e: unknown, where: string, opts: Pick<SftpOptions, 'auth' | 'user'> | null, verb = 'connect to'): PachaError {
  if (e instanceof PachaError) return e;
  const err: Error & ClientErrorExtensions = e instanceof Error ? e : new Error(String(e));
  const code = 'code' in err ? err.code : undefined;
  const msg = `cannot ${verb} the master ${where}: ${err.message.replace(/^connect: /, '')}`;
  switch (err.level) {
    case 'client-authentication':
      return new AuthError(`the master ${where} refused ${opts?.auth.source ?? 'the credentials'}`, {
        hint: `authorise this host's public key on the master (pacha-master authorize ${opts?.user ?? 'HOST'} KEY.pub, or its authorized_keys with OpenSSH)`,
      });
    case 'client-socket':
    case 'client-timeout':
    case 'protocol': // the connection ended before or during the handshake
      return new ConnectionError(msg, { cause: err });
    case 'client-dns':
      return code === 'EAI_AGAIN' ? new ConnectionError(msg, { cause: err }) : new PachaError(msg, { cause: err });
    default:
      return new PachaError(msg, { cause: err });
  }
}

function toStat(a: Stats): RemoteStat {
  const t = a.mode & fs.constants.S_IFMT;
  return {
    type: t === fs.constants.S_IFREG ? 'file' : t === fs.constants.S_IFDIR ? 'dir' : t === fs.constants.S_IFLNK ? 'symlink' : 'other',
    size: a.size,
    mtimeMs: a.mtime * 1000,
    mode: a.mode & 0o7777,
  };
}

function ssh2Config(opts: SftpOptions, knownText: string, onKey: (blob: Buffer) => boolean, sock: net.Socket): ConnectConfig {
  return {
    host: opts.host,
    port: opts.port,
    // Connecting (not connected yet): ssh2 waits for its 'connect' and handles its errors as for its own.
    sock,
    username: opts.user,
    privateKey: opts.auth.privateKey,
    passphrase: opts.auth.passphrase,
    agent: opts.auth.agent,
    readyTimeout: opts.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS,
    keepaliveInterval: 10_000,
    keepaliveCountMax: 3,
    algorithms: { serverHostKey: hostKeyAlgorithms(knownText, opts.host, opts.port) },
    hostVerifier: (key: Buffer) => onKey(key),
    // Straight to the one method pacha has, not "none" first (ssh2's default, as ssh(1) does, to
    // learn the methods): OpenSSH answers a failed attempt only after a delay of its own
    // (against user enumeration), which every connection paid.
    authHandler: opts.auth.privateKey !== undefined ? ['publickey'] : opts.auth.agent !== undefined ? ['agent'] : undefined,
  };
}

/** Connect, authenticate and start the SFTP subsystem. */
function openSftp(conn: ssh2.Client, cfg: ConnectConfig): Promise<SFTPWrapper> {
  return new Promise((resolve, reject) => {
    conn.once('error', reject);
    conn.once('close', () => reject(new ConnectionError('the connection closed before SFTP started')));
    conn.once('ready', () => {
      conn.sftp((err, sftp) => (err ? reject(err) : resolve(sftp)));
    });
    conn.connect(cfg);
  });
}

export class SftpTransport implements Transport {
  readonly description: string;
  private readonly conn: ssh2.Client;
  private readonly sftp: SFTPWrapper;
  private readonly opTimeoutMs: number;
  private readonly log: Logger;
  private posixRename: boolean | null = null;
  private broken: PachaError | null = null;
  /** Rejects when the connection closes: what is in flight then fails at once (ssh2 may not call back). */
  private readonly closed: Promise<never>;

  private constructor(conn: ssh2.Client, sftp: SFTPWrapper, opts: SftpOptions) {
    this.conn = conn;
    this.sftp = sftp;
    this.opTimeoutMs = opts.opTimeoutMs ?? DEFAULT_OP_TIMEOUT_MS;
    this.log = opts.log;
    this.description = `sftp://${opts.user}@${opts.host}:${opts.port}`;
    this.closed = new Promise<never>((_, reject) => {
      conn.on('close', () => {
        this.broken ??= new ConnectionError(`the connection to the master ${opts.host}:${opts.port} was closed`);
        reject(this.broken);
      });
    });
    this.closed.catch(() => undefined); // nobody may be waiting
  }

  static async connect(opts: SftpOptions): Promise<SftpTransport> {
    const knownText = readKnownHosts(opts.knownHostsFile);
    let refusal: HostKeyError | null = null;
    const conn = new ssh2.Client();
    // Errors after the connect surface in the operations; the events only go to the debug log.
    conn.on('error', (e) => opts.log.debug(`ssh: ${e.message}`));
    conn.on('end', () => opts.log.debug('ssh: connection ended'));
    conn.on('close', () => opts.log.debug('ssh: connection closed'));
    // SFTP is request/response: without TCP_NODELAY every small request waits for a delayed ACK.
    conn.on('connect', () => conn.setNoDelay(true));
    // Our socket, so that each turn's writes go out together (coalescing-socket.ts).
    const sock = new CoalescingSocket();
    sock.setMaxListeners(0);
    sock.open(opts.host, opts.port);
    const cfg = ssh2Config(opts, knownText, (blob) => {
      const check = checkHostKey(knownText, opts.host, opts.port, blob);
      if (check.status === 'match') return true;
      refusal = hostKeyError(check.status, opts.host, opts.port, blob, opts.knownHostsFile, check.lines);
      return false;
    }, sock);
    const where = `${opts.user}@${opts.host}:${opts.port}`;
    opts.log.debug(`connecting to ${where} with ${opts.auth.source}`);
    let sftp: SFTPWrapper;
    try {
      // The connect itself is bounded by readyTimeout; this deadline covers the SFTP start too.
      sftp = await deadline(openSftp(conn, cfg), (opts.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS) + 5000, () => conn.destroy(), `connecting to ${where}`);
    } catch (e) {
      conn.destroy();
      if (refusal) throw refusal;
      throw connectError(e, where, opts);
    }
    opts.log.debug(`connected to ${where}`);
    return new SftpTransport(conn, sftp, opts);
  }

  /** Run one SFTP call with the operation deadline; a missed deadline drops the connection. */
  private op<T>(what: string, p: string, fn: (sftp: SFTPWrapper, cb: (err: Error | null | undefined, v?: T) => void) => void): Promise<T> {
    if (this.broken) return Promise.reject(this.broken);
    const call = new Promise<T>((resolve, reject) => {
      fn(this.sftp, (err, v) => (err ? reject(sftpError(what, p, err)) : resolve(v as T)));
    });
    return deadline(Promise.race([call, this.closed]), this.opTimeoutMs, () => this.fail(what), `${what} ${p} on ${this.description}`);
  }

  private fail(what: string): void {
    this.broken ??= new ConnectionError(`the master ${this.description} stopped answering (during ${what}); connection dropped`);
    this.conn.destroy();
  }

  async stat(p: string): Promise<RemoteStat | null> {
    try {
      return toStat(await this.op<Stats>('stat', p, (s, cb) => s.lstat(p, cb)));
    } catch (e) {
      if (e instanceof NotFoundError) return null;
      throw e;
    }
  }

  async list(dir: string): Promise<RemoteEntry[]> {
    const entries = await this.op<FileEntryWithStats[]>('list', dir, (s, cb) => s.readdir(dir, cb));
    return entries.filter((e) => e.filename !== '.' && e.filename !== '..').map((e) => ({ name: e.filename, ...toStat(e.attrs) }));
  }

  readFile(p: string): Promise<Buffer> {
    return this.op<Buffer>('read', p, (s, cb) => s.readFile(p, cb));
  }

  async writeFile(p: string, data: Uint8Array | string): Promise<void> {
    await this.op<void>('write', p, (s, cb) => s.writeFile(p, typeof data === 'string' ? data : Buffer.from(data), cb));
  }

  async createExclusive(p: string, data: Uint8Array | string): Promise<boolean> {
    let handle: Buffer;
    try {
      handle = await this.op<Buffer>('create', p, (s, cb) => s.open(p, 'wx', cb));
    } catch (e) {
      // SFTP v3 has no "exists" status: OpenSSH answers FAILURE. Tell by looking.
      if (e instanceof RemoteError && (await this.stat(p)) !== null) return false;
      throw e;
    }
    const buf = Buffer.from(data);
    try {
      if (buf.length > 0) await this.op<void>('write', p, (s, cb) => s.write(handle, buf, 0, buf.length, 0, cb));
    } finally {
      await this.op<void>('close', p, (s, cb) => s.close(handle, cb));
    }
    return true;
  }

  async download(remote: string, localFile: string, arrived?: (bytes: number) => void): Promise<void> {
    await this.transfer('download', remote, (step) => this.readToFile(remote, localFile, step, arrived));
  }

  /**
   * fastGet's scheme (DOWNLOAD_REQUESTS: reads of one size, several in flight, each written at its
   * place), and also telling `arrived` how many bytes from the start of the file are written: a
   * reader can go through the file while the rest arrives. Resolves when the file is complete.
   */
  private readToFile(remote: string, localFile: string, step: () => void, arrived?: (bytes: number) => void): Promise<void> {
    const sftp = this.sftp;
    const { chunkSize, concurrency } = DOWNLOAD_REQUESTS;
    return new Promise<void>((resolve, reject) => {
      let handle: Buffer | undefined;
      let fd: number | undefined;
      let over = false;
      const finish = (err?: unknown) => {
        if (over) return;
        over = true;
        const closeLocal = (then: (e?: unknown) => void) => (fd === undefined ? then() : fs.close(fd, (e) => then(e ?? undefined)));
        closeLocal((eLocal) => {
          const settle = (eRemote?: unknown) => {
            const e = err ?? eLocal ?? eRemote;
            if (e) reject(e);
            else resolve();
          };
          if (handle && !this.broken) sftp.close(handle, (e) => settle(e ?? undefined));
          else settle();
        });
      };
      sftp.open(remote, 'r', (err, h) => {
        if (err) return finish(err);
        handle = h;
        sftp.fstat(h, (err, attrs) => {
          if (err) return finish(err);
          const size = attrs.size;
          fs.open(localFile, 'w', 0o600, (err, f) => {
            if (err) return finish(err);
            fd = f;
            const chunks = Math.ceil(size / chunkSize);
            if (chunks === 0) {
              arrived?.(0);
              return finish();
            }
            // Chunks written beyond the first one missing: memory follows what has arrived, not
            // the size the server claims.
            const ahead = new Set<number>();
            let next = 0;
            let inOrder = 0;
            /** Read chunk j from `from` on into buf (its own buffer while in flight), write it, go on. */
            const read = (j: number, buf: Buffer, from: number) => {
              const start = j * chunkSize;
              const end = Math.min(size, start + chunkSize);
              sftp.read(h, buf, from - start, end - from, from, (err, nb) => {
                if (over) return;
                if (err) return finish(err);
                if (nb === 0) return finish(new Error(`the file ended at ${from} bytes, its size is ${size}`));
                fs.write(f, buf, from - start, nb, from, (err) => {
                  if (over) return;
                  if (err) return finish(err);
                  step();
                  // A short read: ask for the rest of the chunk.
                  if (from + nb < end) return read(j, buf, from + nb);
                  ahead.add(j);
                  const before = inOrder;
                  while (ahead.delete(inOrder)) inOrder++;
                  if (inOrder > before) arrived?.(Math.min(size, inOrder * chunkSize));
                  if (inOrder === chunks) return finish();
                  if (next < chunks) read(next, buf, next++ * chunkSize);
                });
              });
            };
            for (; next < Math.min(concurrency, chunks); next++) read(next, Buffer.allocUnsafe(chunkSize), next * chunkSize);
          });
        });
      });
    });
  }

  async upload(localFile: string, remote: string): Promise<void> {
    await this.transfer('upload', remote, (step) => new Promise<void>((resolve, reject) => {
      this.sftp.fastPut(localFile, remote, { step, mode: 0o644, ...UPLOAD_REQUESTS }, (err) => (err ? reject(err) : resolve()));
    }));
  }

  /** A transfer may take long; it fails only after opTimeoutMs without progress. */
  private async transfer(what: string, p: string, start: (step: () => void) => Promise<void>): Promise<void> {
    if (this.broken) throw this.broken;
    let timer: NodeJS.Timeout | undefined;
    const stalled = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        this.fail(what);
        reject(new ConnectionError(`${what} ${p}: no progress for ${this.opTimeoutMs / 1000}s from ${this.description}; connection dropped`));
      }, this.opTimeoutMs);
    });
    try {
      await Promise.race([start(() => timer?.refresh()).catch((e: unknown) => Promise.reject(sftpError(what, p, e))), stalled, this.closed]);
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
        await this.op<void>('rename', from, (s, cb) => {
          try {
            s.ext_openssh_rename(from, to, cb);
          } catch (e) {
            // ssh2 throws at once when the server did not advertise the extension.
            cb(new UnsupportedError(`posix-rename@openssh.com: ${e instanceof Error ? e.message : String(e)}`));
          }
        });
        this.posixRename = true;
        return;
      } catch (e) {
        if (!(e instanceof UnsupportedError)) throw e;
        this.posixRename = false;
      }
    }
    await this.op<void>('rename', from, (s, cb) => s.rename(from, to, cb));
  }

  async mkdirp(p: string): Promise<void> {
    // mkdir first, and look only when it fails: the folders asked for are mostly missing (a first
    // push), and every request is a round trip. A missing parent answers NO_SUCH_FILE.
    const mkdir = () => this.op<void>('mkdir', p, (s, cb) => s.mkdir(p, cb));
    try {
      await mkdir();
      return;
    } catch (e) {
      const parent = p.replace(/\/+[^/]+\/*$/, '') || '/';
      if (e instanceof NotFoundError && parent !== p) {
        await this.mkdirp(parent);
        try {
          await mkdir();
          return;
        } catch (again) {
          e = again;
        }
      }
      // It exists (made by another writer meanwhile: fine), or cannot be made: say what is there.
      const st = await this.stat(p);
      if (st?.type === 'dir') return;
      if (st) throw new ExistsError(`sftp mkdir ${p}: exists and is not a directory`);
      throw e;
    }
  }

  async remove(p: string): Promise<void> {
    try {
      await this.op<void>('remove', p, (s, cb) => s.unlink(p, cb));
    } catch (e) {
      if (!(e instanceof NotFoundError)) throw e;
    }
  }

  async close(): Promise<void> {
    if (this.broken) {
      this.conn.destroy();
      return;
    }
    this.broken = new ConnectionError(`the connection to ${this.description} is closed`);
    const closed = new Promise<void>((resolve) => {
      this.conn.once('close', () => resolve());
      this.conn.end();
    });
    await deadline(closed, 5000, () => this.conn.destroy(), 'closing').catch(() => this.conn.destroy());
    this.log.debug(`closed ${this.description}`);
  }
}

/** Reject after ms (calling onTimeout first) unless p settles. */
function deadline<T>(p: Promise<T>, ms: number, onTimeout: () => void, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const t = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      onTimeout();
      reject(new ConnectionError(`timed out after ${ms / 1000}s: ${what}`));
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
      else reject(connectError(e, `${host}:${port}`, null, 'reach'));
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
      algorithms: { serverHostKey: hostKeyAlgorithms(preferred, host, port) },
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
