import crypto from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import ssh2 from 'ssh2';
import type { Attributes, FileEntry, SFTPWrapper } from 'ssh2';
import { HostView, Refusal, type Resolved } from './host-view.ts';
import { checkDirChange, checkMkdir, isProtectedPath, checkOpenForWrite, openForWrite, sameContent, checkRemove, checkRename, isWritableArea, type CreatedSet } from './append-only.ts';
import { HOST_TREE } from '@pacha/shared/master-tree';

// One SFTP channel of an authenticated host: every request is mapped through the host's view
// (confinement) and the append-only rules, then done on the real filesystem.
//
// Rename replaces an existing target atomically (rename(2)), like OpenSSH's
// posix-rename@openssh.com, which is also accepted as an extended request. ssh2's server does
// not advertise extensions, so clients use the plain RENAME here.

const { OPEN_MODE, STATUS_CODE } = ssh2.utils.sftp;
const MAX_READ = 256 * 1024;
const READDIR_BATCH = 128;
const MAX_HANDLES = 64;

type Handle =
  | { kind: 'file'; fd: number; real: string; rel: string; writable: boolean; /** private copy checked at close (openForWrite) */ shadow?: string }
  | { kind: 'dir'; real: string | null; entries: FileEntry[] | null; pos: number; synthetic?: string };

export interface SessionHooks {
  /** Called on every request: keeps the connection from idling out. */
  touch(): void;
  /** Serialises ref updates of one host across its connections. */
  withRefLock<T>(fn: () => Promise<T>): Promise<T>;
  /** An accepted ref update (one log line per push). */
  onRefUpdate(old: string | null, next: string): void;
  debug(msg: string): void;
  /** A request refused (counted for --metrics); "missing" is an answer, not a refusal. */
  onRefusal?(status: 'denied' | 'failure'): void;
}

export function serveSftp(sftp: SFTPWrapper, view: HostView, hooks: SessionHooks): void {
  const handles = new Map<number, Handle>();
  const created: CreatedSet = new Set();
  let nextHandle = 1;

  const newHandle = (h: Handle): Buffer => {
    const id = nextHandle++;
    handles.set(id, h);
    const b = Buffer.alloc(4);
    b.writeUInt32BE(id);
    return b;
  };
  const getHandle = (b: Buffer): [number, Handle] | null => {
    if (b.length !== 4) return null;
    const id = b.readUInt32BE(0);
    const h = handles.get(id);
    return h ? [id, h] : null;
  };

  const fail = (reqId: number, e: unknown) => {
    if (e instanceof Refusal) {
      hooks.debug(`${view.host}: refused: ${e.message}`);
      if (e.status !== 'missing') hooks.onRefusal?.(e.status);
      const code = e.status === 'denied' ? STATUS_CODE.PERMISSION_DENIED : e.status === 'missing' ? STATUS_CODE.NO_SUCH_FILE : STATUS_CODE.FAILURE;
      sftp.status(reqId, code, e.message);
      return;
    }
    const err = e as NodeJS.ErrnoException;
    const code =
      err.code === 'ENOENT' || err.code === 'ENOTDIR' ? STATUS_CODE.NO_SUCH_FILE
      : err.code === 'EACCES' || err.code === 'EPERM' ? STATUS_CODE.PERMISSION_DENIED
      : STATUS_CODE.FAILURE;
    // Real paths stay on the master: say what failed without them.
    sftp.status(reqId, code, err.code ?? 'failure');
  };

  /** Run a request handler; every request gets exactly one reply. */
  const on = <A extends unknown[]>(event: string, fn: (reqId: number, ...args: A) => Promise<void>) => {
    sftp.on(event, (reqId: number, ...args: A) => {
      hooks.touch();
      fn(reqId, ...args).catch((e) => fail(reqId, e));
    });
  };

  on('OPEN', async (reqId, filename: string, flags: number, attrs: Partial<Attributes>) => {
    if (handles.size >= MAX_HANDLES) throw new Refusal('failure', `too many open handles (limit ${MAX_HANDLES})`);
    const r = await view.resolve(filename, true);
    const writing = (flags & (OPEN_MODE.WRITE | OPEN_MODE.APPEND | OPEN_MODE.CREAT | OPEN_MODE.TRUNC)) !== 0;
    if (r.kind === 'ancestor') throw new Refusal(writing ? 'denied' : 'failure', `${r.virtual}: is a directory`);
    let nodeFlags = 0;
    const rw = flags & (OPEN_MODE.READ | OPEN_MODE.WRITE);
    nodeFlags |= rw === (OPEN_MODE.READ | OPEN_MODE.WRITE) ? fs.constants.O_RDWR : rw === OPEN_MODE.WRITE || (writing && rw === 0) ? fs.constants.O_WRONLY : fs.constants.O_RDONLY;
    if (flags & OPEN_MODE.APPEND) nodeFlags |= fs.constants.O_APPEND;
    if (flags & OPEN_MODE.CREAT) nodeFlags |= fs.constants.O_CREAT;
    if (flags & OPEN_MODE.TRUNC) nodeFlags |= fs.constants.O_TRUNC;
    if (flags & OPEN_MODE.EXCL) nodeFlags |= fs.constants.O_EXCL;
    let existed = true;
    let shadow: string | undefined;
    if (writing) {
      const st = await fsp.lstat(r.real).catch(() => null);
      existed = st !== null;
      if ((flags & OPEN_MODE.EXCL) === 0 && openForWrite(r.rel, existed, r.real, created) === 'verify-same') {
        shadow = path.join(os.tmpdir(), `pacha-master-verify-${process.pid}-${crypto.randomBytes(8).toString('hex')}`);
        if (flags & OPEN_MODE.TRUNC) await fsp.writeFile(shadow, '', { mode: 0o600 });
        else await fsp.copyFile(r.real, shadow);
      } else {
        checkOpenForWrite(r.rel, existed, r.real, created);
      }
      // Never follow a symlink when writing (the host cannot make them; the operator might).
      nodeFlags |= fs.constants.O_NOFOLLOW;
    }
    const target = shadow ?? r.real;
    const mode = typeof attrs?.mode === 'number' ? attrs.mode & 0o777 : 0o644;
    const fd = await new Promise<number>((res, rej) => fs.open(target, shadow ? nodeFlags & ~fs.constants.O_TRUNC : nodeFlags, mode, (e, fd) => (e ? rej(e) : res(fd))));
    const st = await fsp.stat(target).catch(() => null);
    if (st?.isDirectory()) {
      fs.close(fd, () => {});
      throw new Refusal('failure', `${r.virtual}: is a directory`);
    }
    if (writing && !existed) created.add(r.real);
    sftp.handle(reqId, newHandle({ kind: 'file', fd, real: r.real, rel: r.rel, writable: writing, shadow }));
  });

  on('READ', async (reqId, hb: Buffer, offset: number, len: number) => {
    const h = getHandle(hb);
    if (!h || h[1].kind !== 'file') throw new Refusal('failure', 'bad handle');
    const f = h[1];
    const buf = Buffer.allocUnsafe(Math.min(len, MAX_READ));
    const n = await new Promise<number>((res, rej) => fs.read(f.fd, buf, 0, buf.length, offset, (e, n) => (e ? rej(e) : res(n))));
    if (n === 0) sftp.status(reqId, STATUS_CODE.EOF);
    else sftp.data(reqId, buf.subarray(0, n));
  });

  on('WRITE', async (reqId, hb: Buffer, offset: number, data: Buffer) => {
    const h = getHandle(hb);
    if (!h || h[1].kind !== 'file') throw new Refusal('failure', 'bad handle');
    if (!h[1].writable) throw new Refusal('denied', 'handle not open for writing');
    const f = h[1];
    let done = 0;
    while (done < data.length) {
      done += await new Promise<number>((res, rej) => fs.write(f.fd, data, done, data.length - done, offset + done, (e, n) => (e ? rej(e) : res(n))));
    }
    sftp.status(reqId, STATUS_CODE.OK);
  });

  on('FSTAT', async (reqId, hb: Buffer) => {
    const h = getHandle(hb);
    if (!h || h[1].kind !== 'file') throw new Refusal('failure', 'bad handle');
    sftp.attrs(reqId, toAttrs(await fsp.stat(h[1].shadow ?? h[1].real)));
  });

  on('FSETSTAT', async (reqId, hb: Buffer, attrs: Partial<Attributes>) => {
    const h = getHandle(hb);
    if (!h || h[1].kind !== 'file') throw new Refusal('failure', 'bad handle');
    if (!h[1].writable) throw new Refusal('denied', 'handle not open for writing');
    await applyAttrs(h[1].shadow ?? h[1].real, attrs);
    sftp.status(reqId, STATUS_CODE.OK);
  });

  on('CLOSE', async (reqId, hb: Buffer) => {
    const h = getHandle(hb);
    if (!h) throw new Refusal('failure', 'bad handle');
    handles.delete(h[0]);
    if (h[1].kind === 'file') {
      const f = h[1];
      await new Promise<void>((res, rej) => fs.close(f.fd, (e) => (e ? rej(e) : res())));
      if (f.shadow) {
        const same = await sameContent(f.shadow, f.real).finally(() => fsp.rm(f.shadow!, { force: true }));
        if (!same) throw new Refusal('denied', `${f.rel}: exists already and may not change (append-only); the new content differs and was discarded`);
      }
    }
    sftp.status(reqId, STATUS_CODE.OK);
  });

  on('OPENDIR', async (reqId, p: string) => {
    if (handles.size >= MAX_HANDLES) throw new Refusal('failure', `too many open handles (limit ${MAX_HANDLES})`);
    const r = await view.resolve(p, true);
    if (r.kind === 'ancestor') {
      sftp.handle(reqId, newHandle({ kind: 'dir', real: null, entries: null, pos: 0, synthetic: r.next }));
      return;
    }
    const st = await fsp.stat(r.real);
    if (!st.isDirectory()) throw new Refusal('failure', `${r.virtual}: not a directory`);
    sftp.handle(reqId, newHandle({ kind: 'dir', real: r.real, entries: null, pos: 0 }));
  });

  on('READDIR', async (reqId, hb: Buffer) => {
    const h = getHandle(hb);
    if (!h || h[1].kind !== 'dir') throw new Refusal('failure', 'bad handle');
    const d = h[1];
    if (d.entries === null) {
      if (d.real === null) {
        d.entries = [entry(d.synthetic!, syntheticDirAttrs())];
      } else {
        const names = await fsp.readdir(d.real);
        const list: FileEntry[] = [];
        for (const name of names) {
          const st = await fsp.lstat(path.join(d.real, name)).catch(() => null);
          if (st) list.push(entry(name, toAttrs(st)));
        }
        d.entries = list;
      }
    }
    if (d.pos >= d.entries.length) {
      sftp.status(reqId, STATUS_CODE.EOF);
      return;
    }
    const batch = d.entries.slice(d.pos, d.pos + READDIR_BATCH);
    d.pos += batch.length;
    sftp.name(reqId, batch);
  });

  const statOf = async (reqId: number, p: string, follow: boolean) => {
    const r = await view.resolve(p, follow);
    if (r.kind === 'ancestor') {
      sftp.attrs(reqId, syntheticDirAttrs());
      return;
    }
    sftp.attrs(reqId, toAttrs(follow ? await fsp.stat(r.real) : await fsp.lstat(r.real)));
  };
  on('STAT', (reqId, p: string) => statOf(reqId, p, true));
  on('LSTAT', (reqId, p: string) => statOf(reqId, p, false));

  on('SETSTAT', async (reqId, p: string, attrs: Partial<Attributes>) => {
    const r = hostOnly(await view.resolve(p, true));
    if (!isWritableArea(r.rel)) throw new Refusal('denied', `${r.virtual}: read-only for the host`);
    checkOpenForWrite(r.rel, true, r.real, created);
    await applyAttrs(r.real, attrs);
    sftp.status(reqId, STATUS_CODE.OK);
  });

  on('REMOVE', async (reqId, p: string) => {
    const r = hostOnly(await view.resolve(p, false));
    checkRemove(r.rel, r.real, created);
    const st = await fsp.lstat(r.real);
    if (st.isDirectory()) throw new Refusal('failure', `${r.virtual}: is a directory (use rmdir)`);
    await fsp.unlink(r.real);
    created.delete(r.real);
    sftp.status(reqId, STATUS_CODE.OK);
  });

  on('MKDIR', async (reqId, p: string, attrs: Partial<Attributes>) => {
    const r = hostOnly(await view.resolve(p, false));
    checkMkdir(r.rel);
    const mode = typeof attrs?.mode === 'number' ? attrs.mode & 0o777 : 0o755;
    await fsp.mkdir(r.real, { mode });
    sftp.status(reqId, STATUS_CODE.OK);
  });

  on('RMDIR', async (reqId, p: string) => {
    const r = hostOnly(await view.resolve(p, false));
    checkDirChange(r.rel);
    await fsp.rmdir(r.real);
    sftp.status(reqId, STATUS_CODE.OK);
  });

  on('REALPATH', async (reqId, p: string) => {
    const v = view.virtualPath(p);
    sftp.name(reqId, [{ filename: v, longname: v, attrs: {} as Attributes }]);
  });

  on('READLINK', async (reqId, p: string) => {
    const r = hostOnly(await view.resolve(p, false));
    const target = await fsp.readlink(r.real);
    sftp.name(reqId, [{ filename: target, longname: target, attrs: {} as Attributes }]);
  });

  on('SYMLINK', async () => {
    throw new Refusal('denied', 'symbolic links cannot be created on the master');
  });

  const rename = async (reqId: number, from: string, to: string) => {
    const a = hostOnly(await view.resolve(from, false));
    const b = hostOnly(await view.resolve(to, false));
    const repo = path.join(await view.realHome(), HOST_TREE.repo);
    await hooks.withRefLock(async () => {
      const outcome = await checkRename(a.rel, a.real, b.rel, b.real, repo, created);
      if (outcome.kind === 'same-object') {
        await fsp.unlink(a.real);
      } else {
        await fsp.rename(a.real, b.real);
        // A file renamed to an object name is history from now on: no longer the session's own.
        if (created.delete(a.real) && !isProtectedPath(b.rel)) created.add(b.real);
      }
      if (outcome.kind === 'ref') {
        // Everything the ref can now reach must stay: nothing from this session is its own any more.
        created.clear();
        hooks.onRefUpdate(outcome.old, outcome.new);
      }
    });
    sftp.status(reqId, STATUS_CODE.OK);
  };
  on('RENAME', (reqId, from: string, to: string) => rename(reqId, from, to));

  on('EXTENDED', async (reqId, name: string, data: Buffer | undefined) => {
    if (name === 'posix-rename@openssh.com' && data) {
      const strs = readStrings(data, 2);
      if (strs) return rename(reqId, strs[0], strs[1]);
    }
    sftp.status(reqId, STATUS_CODE.OP_UNSUPPORTED, `${name} is not supported`);
  });

  const closeAll = () => {
    for (const h of handles.values()) {
      if (h.kind !== 'file') continue;
      fs.close(h.fd, () => {});
      if (h.shadow) fs.rm(h.shadow, { force: true }, () => {});
    }
    handles.clear();
  };
  sftp.on('close', closeAll);
  sftp.on('end', closeAll);
}

function hostOnly(r: Resolved): Extract<Resolved, { kind: 'host' }> {
  if (r.kind !== 'host') throw new Refusal('denied', `${r.virtual}: read-only`);
  return r;
}

function readStrings(buf: Buffer, n: number): string[] | null {
  const out: string[] = [];
  let p = 0;
  for (let i = 0; i < n; i++) {
    if (p + 4 > buf.length) return null;
    const len = buf.readUInt32BE(p);
    p += 4;
    if (p + len > buf.length) return null;
    out.push(buf.toString('utf8', p, p + len));
    p += len;
  }
  return out;
}

async function applyAttrs(real: string, attrs: Partial<Attributes>): Promise<void> {
  // Owners stay the master's; setuid/setgid bits from a host are dropped.
  if (typeof attrs.mode === 'number') await fsp.chmod(real, attrs.mode & 0o777);
  if (typeof attrs.atime === 'number' && typeof attrs.mtime === 'number') await fsp.utimes(real, attrs.atime, attrs.mtime);
  if (typeof attrs.size === 'number') await fsp.truncate(real, attrs.size);
}

function toAttrs(st: fs.Stats): Attributes {
  return { mode: st.mode, uid: st.uid, gid: st.gid, size: st.size, atime: Math.floor(st.atimeMs / 1000), mtime: Math.floor(st.mtimeMs / 1000) };
}

function syntheticDirAttrs(): Attributes {
  const now = Math.floor(Date.now() / 1000);
  return { mode: fs.constants.S_IFDIR | 0o555, uid: 0, gid: 0, size: 4096, atime: now, mtime: now };
}

function entry(name: string, a: Attributes): FileEntry {
  return { filename: name, longname: longname(name, a), attrs: a };
}

/** `ls -l`-style line: some clients (ssh2-sftp-client's list) read the type and rights from it. */
function longname(name: string, a: Attributes): string {
  const t = a.mode & fs.constants.S_IFMT;
  const type = t === fs.constants.S_IFDIR ? 'd' : t === fs.constants.S_IFLNK ? 'l' : t === fs.constants.S_IFREG ? '-' : '?';
  const bits = 'rwxrwxrwx'.split('').map((c, i) => (a.mode & (0o400 >> i) ? c : '-')).join('');
  const date = new Date(a.mtime * 1000).toISOString().slice(0, 16).replace('T', ' ');
  return `${type}${bits} 1 ${a.uid} ${a.gid} ${a.size} ${date} ${name}`;
}
