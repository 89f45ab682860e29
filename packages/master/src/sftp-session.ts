import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import ssh2 from 'ssh2';
import type { Attributes, FileEntry, SFTPWrapper } from 'ssh2';
import { HOST_TREE } from '@pacha/shared/master-tree';
import { checkMkdir, checkRemove, checkRename, checkWrite, classify } from './append-only.ts';
import { tempFileId, type HostState } from './host-state.ts';
import { HostView, Refusal, type Resolved } from './host-view.ts';
import { place } from './place.ts';

// One SFTP channel of an authenticated host: every request is mapped through the host's view
// (confinement) and the allowlist (append-only.ts), then done on the real filesystem. A rename
// onto history is a copy the master checks (place.ts). Limits and the rename lock are the
// host's (host-state.ts), shared by all its channels.
//
// Rename replaces an existing target atomically, like OpenSSH's posix-rename@openssh.com, which
// is also accepted as an extended request. ssh2's server does not advertise extensions, so
// clients use the plain RENAME here.

const { OPEN_MODE, STATUS_CODE } = ssh2.utils.sftp;
const MAX_READ = 256 * 1024;
const READDIR_BATCH = 128;
/** Folders the host creates get the master's mode, never the one it asks for. */
const DIR_MODE = 0o755;
/** Temporary files: never executable, whatever the host asks. */
const FILE_MODE = 0o644;

type Handle =
  | { kind: 'file'; fd: number; real: string; rel: string; writable: boolean; /** A writable handle's temporary file (host-state.ts counts its bytes; a pack's may be streamed). */ temp?: { id: string; append: boolean; pack: boolean } }
  | { kind: 'dir'; real: string | null; entries: FileEntry[] | null; pos: number; synthetic?: string };

export interface SessionHooks {
  /** The host's state, shared with its other connections and channels: limits, the rename lock. */
  host: HostState;
  /** Called on every request: keeps the connection from idling out. */
  touch(): void;
  /** An accepted ref update (one log line per push). */
  onRefUpdate(old: string | null, next: string): void;
  debug(msg: string): void;
  /** A request refused (counted for --metrics); "missing" is an answer, not a refusal. */
  onRefusal?(status: 'denied' | 'failure'): void;
}

export function serveSftp(sftp: SFTPWrapper, view: HostView, hooks: SessionHooks): void {
  const state = hooks.host;
  const handles = new Map<number, Handle>();
  let nextHandle = 1;
  let closed = false;

  /** A handle for a reserved slot; when the channel closed meanwhile, the fd is closed and the slot released. */
  const newHandle = (h: Handle): Buffer | null => {
    if (closed) {
      if (h.kind === 'file') fs.close(h.fd, () => {});
      if (h.kind === 'file' && h.temp) state.tempClosed(h.temp.id);
      state.releaseHandle();
      return null;
    }
    const id = nextHandle++;
    handles.set(id, h);
    const b = Buffer.alloc(4);
    b.writeUInt32BE(id);
    return b;
  };
  const getHandle = (b: Buffer): [number, Handle] | null => {
    if (!Buffer.isBuffer(b) || b.length !== 4) return null;
    const id = b.readUInt32BE(0);
    const h = handles.get(id);
    return h ? [id, h] : null;
  };

  const fail = (reqId: number, e: unknown) => {
    if (closed) return;
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
      let run: Promise<void>;
      try {
        run = fn(reqId, ...args);
      } catch (e) {
        fail(reqId, e);
        return;
      }
      run.catch((e) => fail(reqId, e));
    });
  };

  on('OPEN', async (reqId, filename: string, flags: number) => {
    // Reserved before any await: pipelined OPENs cannot all pass the check first.
    state.reserveHandle();
    try {
      const writing = (flags & (OPEN_MODE.WRITE | OPEN_MODE.APPEND | OPEN_MODE.CREAT | OPEN_MODE.TRUNC)) !== 0;
      const r = await view.resolve(String(filename), !writing);
      if (r.kind === 'ancestor') throw new Refusal(writing ? 'denied' : 'failure', `${r.virtual}: is a directory`);
      let nodeFlags = fs.constants.O_NONBLOCK;
      if (writing) {
        checkWrite(r.rel);
        const rw = flags & (OPEN_MODE.READ | OPEN_MODE.WRITE);
        nodeFlags |= rw === (OPEN_MODE.READ | OPEN_MODE.WRITE) ? fs.constants.O_RDWR : fs.constants.O_WRONLY;
        if (flags & OPEN_MODE.APPEND) nodeFlags |= fs.constants.O_APPEND;
        if (flags & OPEN_MODE.CREAT) nodeFlags |= fs.constants.O_CREAT;
        if (flags & OPEN_MODE.TRUNC) nodeFlags |= fs.constants.O_TRUNC;
        if (flags & OPEN_MODE.EXCL) nodeFlags |= fs.constants.O_EXCL;
        // Never through a symlink (the host cannot make them; the operator might).
        nodeFlags |= fs.constants.O_NOFOLLOW;
      }
      const fd = await new Promise<number>((res, rej) => fs.open(r.real, nodeFlags, FILE_MODE, (e, fd) => (e ? rej(e) : res(fd))));
      const st = await new Promise<fs.Stats>((res, rej) => fs.fstat(fd, (e, st) => (e ? rej(e) : res(st)))).catch((e) => {
        fs.close(fd, () => {});
        throw e;
      });
      if (!st.isFile()) {
        fs.close(fd, () => {});
        throw new Refusal('failure', `${r.virtual}: ${st.isDirectory() ? 'is a directory' : 'not a regular file'}`);
      }
      // Only temporary files and the lock are writable (checkWrite): their bytes count against the host's limit.
      let temp: { id: string; append: boolean; pack: boolean } | undefined;
      if (writing) {
        const k = classify(r.rel);
        temp = { id: tempFileId(st), append: (flags & OPEN_MODE.APPEND) !== 0, pack: k.kind === 'tmp' && k.for === 'pack' };
        // An upload is streamed through one handle: another open of the same file drops its stream.
        if (temp.pack && st.size === 0) state.streamOpen(temp.id, path.dirname(r.real));
        else state.streamDrop(temp.id);
        state.tempOpened(temp.id, st.size);
      }
      const h = newHandle({ kind: 'file', fd, real: r.real, rel: r.rel, writable: writing, temp });
      if (h) sftp.handle(reqId, h);
    } catch (e) {
      state.releaseHandle();
      throw e;
    }
  });

  on('READ', async (reqId, hb: Buffer, offset: number, len: number) => {
    const h = getHandle(hb);
    if (!h || h[1].kind !== 'file') throw new Refusal('failure', 'bad handle');
    const f = h[1];
    const buf = Buffer.allocUnsafe(Math.max(0, Math.min(len, MAX_READ)));
    const n = await new Promise<number>((res, rej) => fs.read(f.fd, buf, 0, buf.length, offset, (e, n) => (e ? rej(e) : res(n))));
    if (n === 0) sftp.status(reqId, STATUS_CODE.EOF);
    else sftp.data(reqId, buf.subarray(0, n));
  });

  on('WRITE', async (reqId, hb: Buffer, offset: number, data: Buffer) => {
    const h = getHandle(hb);
    if (!h || h[1].kind !== 'file') throw new Refusal('failure', 'bad handle');
    if (!h[1].writable) throw new Refusal('denied', 'handle not open for writing');
    const f = h[1];
    // Counted before the write, in this tick: pipelined WRITEs cannot all pass the limit first.
    if (f.temp) {
      state.tempWrite(f.temp.id, f.temp.append ? 'append' : offset, data.length);
      state.streamWrite(f.temp.id, f.temp.append ? 'append' : offset, data);
    }
    let done = 0;
    try {
      while (done < data.length) {
        done += await new Promise<number>((res, rej) => fs.write(f.fd, data, done, data.length - done, offset + done, (e, n) => (e ? rej(e) : res(n))));
      }
    } catch (e) {
      if (f.temp) state.streamDrop(f.temp.id);
      throw e;
    }
    sftp.status(reqId, STATUS_CODE.OK);
  });

  on('FSTAT', async (reqId, hb: Buffer) => {
    const h = getHandle(hb);
    if (!h || h[1].kind !== 'file') throw new Refusal('failure', 'bad handle');
    const f = h[1];
    sftp.attrs(reqId, toAttrs(await new Promise<fs.Stats>((res, rej) => fs.fstat(f.fd, (e, st) => (e ? rej(e) : res(st))))));
  });

  on('FSETSTAT', async (reqId, hb: Buffer, attrs: Partial<Attributes>) => {
    const h = getHandle(hb);
    if (!h || h[1].kind !== 'file') throw new Refusal('failure', 'bad handle');
    if (!h[1].writable) throw new Refusal('denied', `${h[1].rel}: handle not open for writing`);
    checkWrite(h[1].rel);
    if (typeof attrs.size === 'number' && h[1].temp) {
      state.tempResize(h[1].temp.id, attrs.size);
      state.streamDrop(h[1].temp.id);
    }
    await applyAttrs(h[1].fd, attrs);
    sftp.status(reqId, STATUS_CODE.OK);
  });

  on('CLOSE', async (reqId, hb: Buffer) => {
    const h = getHandle(hb);
    if (!h) throw new Refusal('failure', 'bad handle');
    handles.delete(h[0]);
    state.releaseHandle();
    if (h[1].kind === 'file') {
      const f = h[1];
      if (f.temp) state.tempClosed(f.temp.id);
      await new Promise<void>((res, rej) => fs.close(f.fd, (e) => (e ? rej(e) : res())));
    }
    sftp.status(reqId, STATUS_CODE.OK);
  });

  on('OPENDIR', async (reqId, p: string) => {
    state.reserveHandle();
    try {
      const r = await view.resolve(String(p), true);
      let h: Buffer | null;
      if (r.kind === 'ancestor') h = newHandle({ kind: 'dir', real: null, entries: null, pos: 0, synthetic: r.next });
      else {
        const st = await fsp.stat(r.real);
        if (!st.isDirectory()) throw new Refusal('failure', `${r.virtual}: not a directory`);
        h = newHandle({ kind: 'dir', real: r.real, entries: null, pos: 0 });
      }
      if (h) sftp.handle(reqId, h);
    } catch (e) {
      state.releaseHandle();
      throw e;
    }
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
    const r = await view.resolve(String(p), follow);
    if (r.kind === 'ancestor') {
      sftp.attrs(reqId, syntheticDirAttrs());
      return;
    }
    sftp.attrs(reqId, toAttrs(follow ? await fsp.stat(r.real) : await fsp.lstat(r.real)));
  };
  on('STAT', (reqId, p: string) => statOf(reqId, p, true));
  on('LSTAT', (reqId, p: string) => statOf(reqId, p, false));

  on('SETSTAT', async (reqId, p: string, attrs: Partial<Attributes>) => {
    const r = hostOnly(await view.resolve(String(p), false));
    // Only the host's temporary files and lock: never a folder (modes of repo/objects...), never history.
    checkWrite(r.rel);
    const fd = await new Promise<number>((res, rej) => fs.open(r.real, fs.constants.O_WRONLY | fs.constants.O_NOFOLLOW | fs.constants.O_NONBLOCK, (e, fd) => (e ? rej(e) : res(fd))));
    try {
      const st = fs.fstatSync(fd);
      if (!st.isFile()) throw new Refusal('denied', `${r.virtual}: not a regular file`);
      if (typeof attrs.size === 'number') {
        state.tempResize(tempFileId(st), attrs.size);
        state.streamDrop(tempFileId(st));
      }
      await applyAttrs(fd, attrs);
    } finally {
      fs.closeSync(fd);
    }
    sftp.status(reqId, STATUS_CODE.OK);
  });

  on('REMOVE', async (reqId, p: string) => {
    const r = hostOnly(await view.resolve(String(p), false));
    checkRemove(r.rel);
    const st = await fsp.lstat(r.real);
    if (st.isDirectory()) throw new Refusal('failure', `${r.virtual}: is a directory`);
    await fsp.unlink(r.real);
    state.tempUnlinked(tempFileId(st));
    sftp.status(reqId, STATUS_CODE.OK);
  });

  on('MKDIR', async (reqId, p: string) => {
    const r = hostOnly(await view.resolve(String(p), false));
    checkMkdir(r.rel);
    await fsp.mkdir(r.real, { mode: DIR_MODE });
    sftp.status(reqId, STATUS_CODE.OK);
  });

  on('RMDIR', async (_reqId, p: string) => {
    const r = hostOnly(await view.resolve(String(p), false));
    throw new Refusal('denied', `${r.virtual}: folders cannot be removed by the host`);
  });

  on('REALPATH', async (reqId, p: string) => {
    const v = view.virtualPath(String(p));
    sftp.name(reqId, [{ filename: v, longname: v, attrs: {} as Attributes }]);
  });

  on('READLINK', async (reqId, p: string) => {
    const r = hostOnly(await view.resolve(String(p), false));
    const target = await fsp.readlink(r.real);
    sftp.name(reqId, [{ filename: target, longname: target, attrs: {} as Attributes }]);
  });

  on('SYMLINK', async () => {
    throw new Refusal('denied', 'symbolic links cannot be created on the master');
  });

  const rename = async (reqId: number, from: string, to: string) => {
    const a = hostOnly(await view.resolve(String(from), false));
    const b = hostOnly(await view.resolve(String(to), false));
    const target = checkRename(a.rel, b.rel);
    const repo = path.join(await view.realHome(), HOST_TREE.repo);
    // One rename of a host at a time, whichever connection or channel it comes on.
    const outcome = await state.serialize(async () => {
      const st = await fsp.lstat(a.real);
      const o = await place(a.real, b.real, target, repo, state, state.takeStream(tempFileId(st)));
      if (o.kind !== 'ref' && o.scanned !== undefined) hooks.debug(`${view.host}: ${b.rel}: placed from the upload as received, ${o.scanned} entries checked on the way in`);
      // The host's file is gone (place removed it after copying).
      state.tempUnlinked(tempFileId(st));
      return o;
    });
    if (outcome.kind === 'ref') hooks.onRefUpdate(outcome.old, outcome.next);
    if (!closed) sftp.status(reqId, STATUS_CODE.OK);
  };
  on('RENAME', (reqId, from: string, to: string) => rename(reqId, from, to));

  on('EXTENDED', async (reqId, name: string, data: Buffer | undefined) => {
    if (name === 'posix-rename@openssh.com' && Buffer.isBuffer(data)) {
      const strs = readStrings(data, 2);
      if (strs) return rename(reqId, strs[0], strs[1]);
    }
    sftp.status(reqId, STATUS_CODE.OP_UNSUPPORTED, `${String(name).slice(0, 64)} is not supported`);
  });

  const closeAll = () => {
    if (closed) return;
    closed = true;
    for (const h of handles.values()) {
      if (h.kind === 'file') fs.close(h.fd, () => {});
      if (h.kind === 'file' && h.temp) state.tempClosed(h.temp.id);
      state.releaseHandle();
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

/** On a temporary file or the lock only (the caller checked): owners stay the master's, no execute or set-id bits. */
async function applyAttrs(fd: number, attrs: Partial<Attributes>): Promise<void> {
  const call = (f: (cb: (e: NodeJS.ErrnoException | null) => void) => void) => new Promise<void>((res, rej) => f((e) => (e ? rej(e) : res())));
  if (typeof attrs.mode === 'number') await call((cb) => fs.fchmod(fd, attrs.mode! & 0o666, cb));
  if (typeof attrs.atime === 'number' && typeof attrs.mtime === 'number') await call((cb) => fs.futimes(fd, attrs.atime!, attrs.mtime!, cb));
  if (typeof attrs.size === 'number') await call((cb) => fs.ftruncate(fd, attrs.size!, cb));
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
