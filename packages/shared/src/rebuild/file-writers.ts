import os from 'node:os';
import { Worker } from 'node:worker_threads';
import { LIBC, nativeAt, nativeXattr } from '../xattr/native.ts';
import { AT_SYMLINK_NOFOLLOW, NEW_FILE_FLAGS, O_CLOEXEC, RENAME_NOREPLACE } from './target-tree.ts';

// Threads that write the restore's new files, so that the kernel's work for them (creating,
// writing, chown, utimes, chmod, rename: most of a large restore) runs on every core while the
// main thread verifies directories and hands out the next files. The main thread stays the only
// one that opens and checks directories (target-tree.ts): a thread gets a directory's descriptor,
// already verified, and does every call of a file on that descriptor or on the file's own:
// openat(O_CREAT|O_EXCL|O_NOFOLLOW) of a temporary name, write, fchown, futimes, fchmod, close,
// renameat2(RENAME_NOREPLACE) onto the name. Descriptors belong to the process, so a thread's
// calls reach the very directory the main thread verified, wherever a local user moves it.
// Files go in batches (one message each way per batch, their contents moved in one buffer), as
// for the deflate thread (git/deflate-worker.ts).
//
// New symlinks go the same way: symlinkat(2) of a temporary name in the verified directory,
// fchownat(2) and utimensat(2) on that name without following it (AT_SYMLINK_NOFOLLOW), and the
// same renameat2; a symlink's mode means nothing on Linux.
//
// A thread stops after the owner when the file may need extended attributes (the record has some,
// or the new file got some from its directory: a default ACL, a label) and hands the still open
// descriptor back: the main thread applies them (xattr/xattr.ts, the one home of that rule), then
// the times and the mode, and renames. It hands back the rename alone on a file system without
// RENAME_NOREPLACE (target-tree.ts falls back there).

/** One new file or symlink: its directory (verified, kept open until the batch is back), names, content and metadata. */
export interface WriteJob {
  dirFd: number;
  tmp: string;
  name: string;
  /** A file's content (empty for a symlink). */
  data: Buffer;
  /** A symlink's target: the job is a symlink. */
  target?: string;
  uid: number;
  gid: number;
  /** mtime in seconds, as futimes takes it. */
  mtime: number;
  /** mtime in nanoseconds, as utimensat takes it (symlinks). */
  mtimeNs: bigint;
  mode: number;
  /** 0: no extended attributes are restored; 1: hand back the descriptor if the new file has any; 2: always hand it back. */
  xattrs: 0 | 1 | 2;
}

/**
 * What became of a job: in place; handed back after its owner (a file's `fd` open, for the
 * attributes, times, mode and rename; a symlink's `fd` absent: its attributes, times and rename
 * by its name) or before its rename (closed, complete); refused because its name was taken
 * (the temporary file removed); or failed (the temporary file removed).
 */
export type WriteOutcome =
  | { kind: 'placed' }
  | { kind: 'xattrs'; fd?: number }
  | { kind: 'rename' }
  | { kind: 'appeared' }
  | { kind: 'failed'; error: Error };

/** Numbers per job in a batch's message (see write and the thread's decoding). */
const FIELDS = 10;

// Plain JavaScript run with `eval` (as deflate-worker.ts), so the bundled programs need no file
// beside them. The outcome of job i is codes[i] (0 placed, 1 xattrs with fds[i], 2 rename,
// 3 appeared, 4 failed with errors[i]).
const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const fs = require('node:fs');
const os = require('node:os');
const m = { exports: {} };
process.dlopen(m, workerData.koffi);
const koffi = m.exports;
const libc = koffi.load('libc.so.6');
const D = ${JSON.stringify({ openat: LIBC.openat, renameat2: LIBC.renameat2, unlinkat: LIBC.unlinkat, close: LIBC.close, flistxattr: LIBC.flistxattr, symlinkat: LIBC.symlinkat, fchownat: LIBC.fchownat, utimensat: LIBC.utimensat, llistxattr: LIBC.llistxattr })};
const openat = libc.func(D.openat);
const symlinkat = libc.func(D.symlinkat);
const fchownat = libc.func(D.fchownat);
const utimensat = libc.func(D.utimensat);
const llistxattr = libc.func(D.llistxattr);
const times = Buffer.alloc(32);
const renameat2 = libc.func(D.renameat2);
const unlinkat = libc.func(D.unlinkat);
const close = libc.func(D.close);
const flistxattr = libc.func(D.flistxattr);
const names = new Map();
for (const [name, n] of Object.entries(os.constants.errno)) if (!names.has(n)) names.set(n, name);
const code = () => names.get(koffi.errno()) ?? 'errno ' + koffi.errno();
const FLAGS = ${NEW_FILE_FLAGS | O_CLOEXEC};
const NOREPLACE = ${RENAME_NOREPLACE};
const NOFOLLOW = ${AT_SYMLINK_NOFOLLOW};
function rename(j, out, i) {
  if (renameat2(j.dirFd, j.tmp, j.dirFd, j.name, NOREPLACE) === 0) return 0;
  const c = code();
  if (c === 'EINVAL' || c === 'ENOSYS') return 2;
  unlinkat(j.dirFd, j.tmp, 0);
  if (c === 'EEXIST') return 3;
  out.errors[i] = { code: c, syscall: 'rename' };
  return 4;
}
function link(j, i, out) {
  if (symlinkat(j.target, j.dirFd, j.tmp) !== 0) {
    out.errors[i] = { code: code(), syscall: 'symlink' };
    return 4;
  }
  let failed;
  if (fchownat(j.dirFd, j.tmp, j.uid, j.gid, NOFOLLOW) !== 0) failed = 'lchown';
  // The name under the directory's descriptor, its last component not followed.
  else if (j.xattrs === 2 || (j.xattrs === 1 && llistxattr('/proc/self/fd/' + j.dirFd + '/' + j.tmp, null, 0) !== 0)) return 1;
  else {
    const s = j.mtimeNs / 1000000000n;
    times.writeBigInt64LE(s, 0);
    times.writeBigInt64LE(j.mtimeNs - s * 1000000000n, 8);
    times.copy(times, 16, 0, 16);
    if (utimensat(j.dirFd, j.tmp, times, NOFOLLOW) !== 0) failed = 'lutimes';
  }
  if (failed) {
    out.errors[i] = { code: code(), syscall: failed };
    unlinkat(j.dirFd, j.tmp, 0);
    return 4;
  }
  return rename(j, out, i);
}
function one(j, data, i, out) {
  if (j.target !== undefined) return link(j, i, out);
  const fd = openat(j.dirFd, j.tmp, FLAGS, 0o600);
  if (fd < 0) {
    out.errors[i] = { code: code(), syscall: 'open' };
    return 4;
  }
  try {
    for (let off = 0; off < data.length; ) off += fs.writeSync(fd, data, off, data.length - off);
    fs.fchownSync(fd, j.uid, j.gid);
    if (j.xattrs === 2 || (j.xattrs === 1 && flistxattr(fd, null, 0) !== 0)) {
      out.fds[i] = fd;
      return 1;
    }
    fs.futimesSync(fd, j.mtime, j.mtime);
    fs.fchmodSync(fd, j.mode);
  } catch (e) {
    close(fd);
    unlinkat(j.dirFd, j.tmp, 0);
    out.errors[i] = { code: e.code, syscall: e.syscall, message: e.message };
    return 4;
  }
  close(fd);
  return rename(j, out, i);
}
parentPort.on('message', ({ id, n, f, ns, names, data }) => {
  const out = { codes: new Uint8Array(n), fds: new Int32Array(n), errors: {} };
  const all = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  let at = 0;
  let c = 0;
  for (let i = 0; i < n; i++) {
    const k = i * ${FIELDS};
    const tmpLen = f[k + 7], nameLen = f[k + 8], targetLen = f[k + 9];
    const j = { dirFd: f[k], uid: f[k + 2], gid: f[k + 3], mode: f[k + 4], xattrs: f[k + 5], mtime: f[k + 6], mtimeNs: ns[i] };
    j.tmp = names.slice(c, (c += tmpLen));
    j.name = names.slice(c, (c += nameLen));
    j.target = targetLen < 0 ? undefined : names.slice(c, (c += targetLen));
    const size = f[k + 1];
    out.codes[i] = one(j, all.subarray(at, at + size), i, out);
    at += size;
  }
  parentPort.postMessage({ id, ...out });
});
`;

interface Reply {
  id: number;
  codes: Uint8Array;
  fds: Int32Array;
  errors: Record<number, { code?: string; syscall?: string; message?: string }>;
}

/** Threads for the restore's new files; null where koffi's native module (openat, renameat2) is not there. */
export class FileWriters {
  private readonly workers: Worker[] = [];
  private readonly waiting = new Map<number, { jobs: WriteJob[]; resolve: (o: WriteOutcome[]) => void; reject: (e: Error) => void }>();
  private readonly load: number[] = [];
  private nextId = 0;
  private failed: Error | undefined;

  static start(threads: number): FileWriters | null {
    const n = nativeXattr();
    if (threads <= 0 || !n.ok || nativeAt() === null) return null;
    return new FileWriters(n.from, threads);
  }

  /**
   * The threads worth starting for `files` new files: none for a small restore (a thread's start
   * costs more than it saves) or on one CPU (nothing would run beside the main thread); two
   * otherwise (what was measured, on 2 CPUs).
   */
  static threadsFor(files: number): number {
    return files < 1000 || os.availableParallelism() < 2 ? 0 : 2;
  }

  private constructor(koffiFile: string, threads: number) {
    const fail = (e: Error) => {
      this.failed ??= e;
      for (const w of this.waiting.values()) w.reject(e);
      this.waiting.clear();
    };
    for (let i = 0; i < threads; i++) {
      const w = new Worker(WORKER_SOURCE, { eval: true, workerData: { koffi: koffiFile } });
      w.unref();
      w.on('message', (m: Reply) => this.answer(i, m));
      w.on('error', fail);
      w.on('exit', (code) => fail(new Error(`a restore thread stopped (exit code ${code})`)));
      this.workers.push(w);
      this.load.push(0);
    }
  }

  /** Symlinks too: utimensat's two struct timespec are written as 64-bit fields (every 64-bit Linux). */
  static readonly symlinks = /64/.test(process.arch);

  /** Batches given to the threads and not back yet. */
  get pending(): number {
    return this.waiting.size;
  }

  get threads(): number {
    return this.workers.length;
  }

  /** Write a batch of files on the least busy thread; their outcomes, in order. Keep their directories open until then. */
  write(jobs: WriteJob[]): Promise<WriteOutcome[]> {
    if (this.failed) return Promise.reject(this.failed);
    const size = jobs.reduce((n, j) => n + j.data.length, 0);
    // Its own memory (not a slice of Node's pool), moved to the thread, not copied again.
    const data = Buffer.allocUnsafeSlow(size);
    let at = 0;
    for (const j of jobs) at += j.data.copy(data, at);
    // The jobs in arrays, not objects: one copy each instead of a clone of every field.
    const n = jobs.length;
    const f = new Float64Array(n * FIELDS);
    const ns = new BigInt64Array(n);
    const names: string[] = [];
    for (let i = 0; i < n; i++) {
      const j = jobs[i];
      const k = i * FIELDS;
      f[k] = j.dirFd;
      f[k + 1] = j.data.length;
      f[k + 2] = j.uid;
      f[k + 3] = j.gid;
      f[k + 4] = j.mode;
      f[k + 5] = j.xattrs;
      f[k + 6] = j.mtime;
      f[k + 7] = j.tmp.length;
      f[k + 8] = j.name.length;
      f[k + 9] = j.target === undefined ? -1 : j.target.length;
      ns[i] = j.mtimeNs;
      names.push(j.tmp, j.name, j.target ?? '');
    }
    const id = this.nextId++;
    let w = 0;
    for (let i = 1; i < this.load.length; i++) if (this.load[i] < this.load[w]) w = i;
    this.load[w]++;
    const p = new Promise<WriteOutcome[]>((resolve, reject) => this.waiting.set(id, { jobs, resolve, reject }));
    this.workers[w].postMessage({ id, n, f, ns, names: names.join(''), data }, [data.buffer as ArrayBuffer, f.buffer, ns.buffer]);
    return p;
  }

  private answer(worker: number, m: Reply): void {
    this.load[worker]--;
    const w = this.waiting.get(m.id);
    if (!w) return;
    this.waiting.delete(m.id);
    const out: WriteOutcome[] = [];
    for (let i = 0; i < m.codes.length; i++) {
      const c = m.codes[i];
      if (c === 0) out.push({ kind: 'placed' });
      else if (c === 1) out.push(w.jobs[i].target === undefined ? { kind: 'xattrs', fd: m.fds[i] } : { kind: 'xattrs' });
      else if (c === 2) out.push({ kind: 'rename' });
      else if (c === 3) out.push({ kind: 'appeared' });
      else {
        const e = m.errors[i] ?? {};
        const err: NodeJS.ErrnoException = new Error(e.message ?? `${e.code}: ${e.syscall}`);
        err.code = e.code;
        err.syscall = e.syscall;
        out.push({ kind: 'failed', error: err });
      }
    }
    w.resolve(out);
  }

  close(): void {
    for (const w of this.workers) void w.terminate();
  }
}
