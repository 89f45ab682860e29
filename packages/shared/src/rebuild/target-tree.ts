import fs from 'node:fs';
import path from 'node:path';
import { PachaError } from '../errors.ts';
import { escapeTerminal } from '../terminal.ts';
import { nativeAt, type AtCalls } from '../xattr/native.ts';

// The restore's only way to the target host's files: directory descriptors, opened one path
// component at a time from the root dir, never following a symlink, each checked against what
// the plan saw there (device and inode) or, for a directory the restore created, against what
// it created. Node has no openat(2): a name is opened as /proc/self/fd/<dir fd>/<name>, which
// the kernel resolves from that descriptor's directory (wherever it has been moved), and whose
// last component is not followed with O_NOFOLLOW (open), nor by mkdir, symlink, rename, unlink,
// lstat, lchown and lutimes. So a local user who swaps a directory or a file for a symlink
// between the plan and the restore (or during it) makes that path fail, never redirects it.
// Where koffi's native module is there (xattr/native.ts), the calls made for every file and
// directory, creating and opening it and renaming it into place, are openat(2), mkdirat(2) and
// renameat2(2) on the descriptor itself: no walk through /proc, and a rename onto a name that must be free is refused by the
// kernel (RENAME_NOREPLACE) instead of checked with an lstat just before it.

const O = fs.constants;
const S_ISGID = 0o2000;
const DIR_FLAGS = O.O_RDONLY | O.O_DIRECTORY | O.O_NOFOLLOW;
/** An existing file, for its metadata or a copy: no symlink, no blocking on a FIFO, no controlling tty. */
export const EXISTING_FILE_FLAGS = O.O_RDONLY | O.O_NOFOLLOW | O.O_NONBLOCK | O.O_NOCTTY;
/** A new temporary file: created here, by us, or the open fails. */
export const NEW_FILE_FLAGS = O.O_WRONLY | O.O_CREAT | O.O_EXCL | O.O_NOFOLLOW;

/** Device and inode: which file a name leads to. */
export interface Identity {
  dev: bigint;
  ino: bigint;
}

export function sameIdentity(a: Identity, b: Identity): boolean {
  return a.dev === b.dev && a.ino === b.ino;
}

/**
 * A path of the restore that changed since the plan (a symlink now, another file, gone, or
 * something new in the way): refused, never followed. Stable code for scripts and tests.
 */
export class TargetChangedError extends PachaError {
  override readonly code = 'TARGET_CHANGED';
  readonly hostPath: string;
  readonly reason: string;
  constructor(hostPath: string, reason: string) {
    super(`${escapeTerminal(hostPath)}: ${reason} since the plan: refused, not followed`);
    this.name = 'TargetChangedError';
    this.hostPath = hostPath;
    this.reason = reason;
  }
}

/** An open, verified directory of the target. `at(name)` is the path to hand to *at-like calls. */
export interface TargetDir {
  readonly hostPath: string;
  readonly fd: number;
  at(name: string): string;
}

function kind(st: fs.BigIntStats): string {
  return st.isSymbolicLink() ? 'a symlink' : st.isDirectory() ? 'a directory' : st.isFile() ? 'a file' : 'a special file';
}

/** Why an open without following failed, as the refusal says it. */
function openFailure(e: unknown): string | undefined {
  const code = (e as NodeJS.ErrnoException).code;
  if (code === 'ELOOP') return 'became a symlink';
  if (code === 'ENOTDIR') return 'is no longer a directory';
  if (code === 'ENOENT') return 'disappeared';
  return undefined;
}

// Not in fs.constants; the same on every Linux architecture Node runs on.
export const O_CLOEXEC = 0o2000000;
export const RENAME_NOREPLACE = 1;
export const AT_SYMLINK_NOFOLLOW = 0x100;

/** A failed *at call as Node reports a failed fs call (code, syscall, path). */
function atError(calls: AtCalls, syscall: string, p: string): NodeJS.ErrnoException {
  const code = calls.errorCode();
  const e: NodeJS.ErrnoException = new Error(`${code}: ${syscall} '${p}'`);
  e.code = code;
  e.syscall = syscall;
  e.path = p;
  return e;
}

// Descriptors kept open at once; beyond it they are closed between batches (trim) and opened,
// and verified, again on use.
const KEEP_OPEN = 512;

export class TargetTree {
  readonly root: string;
  private readonly rootFd: number;
  private readonly open = new Map<string, TargetDir>();
  /** Forgotten descriptors, closed at the next trim (see forget). */
  private retired: TargetDir[] = [];
  /** The identity every directory must still have: from the plan, from our mkdir, or from its first open. */
  private readonly expected = new Map<string, Identity>();
  private readonly euid = process.geteuid?.() ?? 0;
  /** openat and renameat2, when available. */
  private readonly atCalls = nativeAt();
  /** False once a filesystem refused RENAME_NOREPLACE: lstat, then rename. */
  private noReplace = true;

  /** root: the root dir, trusted as given (the operator's PACHA_ROOT_DIR, or /). */
  constructor(root: string) {
    this.root = root;
    this.rootFd = fs.openSync(root, O.O_RDONLY | O.O_DIRECTORY);
  }

  /** What the plan saw at a host path (files, symlinks and directories). */
  expect(hostPath: string, id: Identity): void {
    this.expected.set(hostPath, id);
  }

  expectedAt(hostPath: string): Identity | undefined {
    return this.expected.get(hostPath);
  }

  private handle(hostPath: string, fd: number): TargetDir {
    const prefix = `/proc/self/fd/${fd}/`;
    return { hostPath, fd, at: (name) => prefix + name };
  }

  /** The verified directory at a host path ("/" is the root dir). */
  dir(hostPath: string): TargetDir {
    if (hostPath === '/') return this.handle('/', this.rootFd);
    const cached = this.open.get(hostPath);
    if (cached) return cached;
    const parent = this.dir(path.posix.dirname(hostPath));
    const name = path.posix.basename(hostPath);
    let fd: number;
    try {
      fd = this.openAt(parent, name, DIR_FLAGS, 0);
    } catch (e) {
      let why = openFailure(e);
      // O_DIRECTORY answers ENOTDIR for a symlink too: say which it is.
      if (why === 'is no longer a directory' && this.lstat(parent, name)?.isSymbolicLink()) why = 'became a symlink';
      if (why) throw new TargetChangedError(hostPath, why);
      throw e;
    }
    try {
      const st = fs.fstatSync(fd, { bigint: true });
      const want = this.expected.get(hostPath);
      if (want && !sameIdentity(want, st)) throw new TargetChangedError(hostPath, 'was replaced by another directory');
      if (!want) this.expected.set(hostPath, { dev: st.dev, ino: st.ino });
    } catch (e) {
      fs.closeSync(fd);
      throw e;
    }
    const d = this.handle(hostPath, fd);
    this.open.set(hostPath, d);
    return d;
  }

  /** Create a directory (private until its metadata is applied, last) and open it. */
  mkdir(hostPath: string): TargetDir {
    const parent = this.dir(path.posix.dirname(hostPath));
    try {
      this.mkdirAt(parent, path.posix.basename(hostPath), 0o700);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'EEXIST') throw new TargetChangedError(hostPath, 'appeared');
      throw e;
    }
    this.expected.delete(hostPath);
    const d = this.dir(hostPath);
    // Ours: owned by us and private. Anything else was put there by someone in between. Below a
    // setgid directory (as /var/local on Debian), mkdir gives the new one the bit and the
    // parent's group, and what is created in it that group.
    const st = fs.fstatSync(d.fd);
    if (st.uid !== this.euid || (st.mode & 0o7777 & ~S_ISGID) !== 0o700) {
      this.forget(hostPath);
      throw new TargetChangedError(hostPath, 'was replaced right after it was created');
    }
    return d;
  }

  /** A directory above the snapshot's roots that is missing: created 0755, as a package manager would. */
  mkdirAbove(hostPath: string): void {
    const parent = this.dir(path.posix.dirname(hostPath));
    try {
      this.mkdirAt(parent, path.posix.basename(hostPath), 0o755);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    }
  }

  /** Create a new file in a verified directory (O_EXCL, not followed); its descriptor, which the caller closes. */
  createFile(dir: TargetDir, name: string, mode: number): number {
    return this.openAt(dir, name, NEW_FILE_FLAGS, mode);
  }

  /** Another descriptor of a verified directory (its "."), which the caller closes; the tree closes its own as it goes. */
  reopen(dir: TargetDir): number {
    return this.openAt(dir, '.', O.O_RDONLY | O.O_DIRECTORY, 0);
  }

  /** open(2) of a name in a verified directory: openat on its descriptor, or its name under /proc/self/fd. */
  private openAt(dir: TargetDir, name: string, flags: number, mode: number): number {
    if (!this.atCalls) return fs.openSync(dir.at(name), flags, mode);
    const fd = this.atCalls.openat(dir.fd, name, flags | O_CLOEXEC, mode);
    if (fd < 0) throw atError(this.atCalls, 'open', dir.at(name));
    return fd;
  }

  /** mkdir(2) of a name in a verified directory (the mode before the umask, as mkdir takes it). */
  private mkdirAt(dir: TargetDir, name: string, mode: number): void {
    if (!this.atCalls) return fs.mkdirSync(dir.at(name), { mode });
    if (this.atCalls.mkdirat(dir.fd, name, mode) < 0) throw atError(this.atCalls, 'mkdir', dir.at(name));
  }

  /**
   * Rename a finished temporary name onto a name the plan saw free; refused (nothing renamed)
   * when something is there now.
   */
  renameToFree(dir: TargetDir, from: string, to: string, hostPath: string): void {
    if (this.atCalls && this.noReplace) {
      if (this.atCalls.renameat2(dir.fd, from, dir.fd, to, RENAME_NOREPLACE) === 0) return;
      const code = this.atCalls.errorCode();
      if (code === 'EEXIST') throw new TargetChangedError(hostPath, 'appeared');
      if (code !== 'EINVAL' && code !== 'ENOSYS') throw atError(this.atCalls, 'rename', dir.at(from));
      this.noReplace = false; // this filesystem has no RENAME_NOREPLACE
    }
    if (this.lstat(dir, to)) throw new TargetChangedError(hostPath, 'appeared');
    fs.renameSync(dir.at(from), dir.at(to));
  }

  /** lstat of a name in a verified directory (not followed); undefined when there is none. */
  lstat(dir: TargetDir, name: string): fs.BigIntStats | undefined {
    try {
      return fs.lstatSync(dir.at(name), { bigint: true });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw e;
    }
  }

  /**
   * Open an existing file of the plan for its metadata or a copy: not followed, and still the
   * file the plan saw. The caller closes the descriptor.
   */
  openExisting(hostPath: string, want: Identity | undefined): number {
    const dir = this.dir(path.posix.dirname(hostPath));
    let fd: number;
    try {
      fd = fs.openSync(dir.at(path.posix.basename(hostPath)), EXISTING_FILE_FLAGS);
    } catch (e) {
      const why = openFailure(e);
      if (why) throw new TargetChangedError(hostPath, why === 'is no longer a directory' ? 'disappeared' : why);
      throw e;
    }
    const st = fs.fstatSync(fd, { bigint: true });
    const why = !st.isFile() ? `is ${kind(st)} now` : want && !sameIdentity(want, st) ? 'was replaced by another file' : undefined;
    if (why) {
      fs.closeSync(fd);
      throw new TargetChangedError(hostPath, why);
    }
    return fd;
  }

  /** An existing symlink of the plan, checked without following: still the link the plan saw. */
  checkLink(hostPath: string, want: Identity | undefined): TargetDir {
    const dir = this.dir(path.posix.dirname(hostPath));
    const st = this.lstat(dir, path.posix.basename(hostPath));
    if (!st) throw new TargetChangedError(hostPath, 'disappeared');
    if (!st.isSymbolicLink()) throw new TargetChangedError(hostPath, `is ${kind(st)} now`);
    if (want && !sameIdentity(want, st)) throw new TargetChangedError(hostPath, 'was replaced by another symlink');
    return dir;
  }

  /**
   * Stop using a directory's descriptor (and its descendants'): the next use opens and verifies
   * it again. The descriptors are closed at the next trim, not now: a file of the batch being
   * written may still name its directory by that descriptor, and a closed number can be reused.
   */
  forget(hostPath: string): void {
    for (const [p, d] of this.open) {
      if (p === hostPath || p.startsWith(hostPath + '/')) {
        this.retired.push(d);
        this.open.delete(p);
      }
    }
  }

  /**
   * Between batches: close forgotten descriptors and, beyond KEEP_OPEN, the least recently
   * opened others down to half of it, except those the work in flight uses (they are opened and
   * verified again when used next).
   */
  trim(inUse: Iterable<TargetDir> | (() => Iterable<TargetDir>)): void {
    // Most calls find nothing to do: the directories in use are only listed when there is.
    if (this.retired.length === 0 && this.open.size <= KEEP_OPEN) return;
    const keep = new Set(typeof inUse === 'function' ? inUse() : inUse);
    const retired = this.retired;
    this.retired = [];
    for (const d of retired) {
      if (keep.has(d)) this.retired.push(d);
      else fs.closeSync(d.fd);
    }
    if (this.open.size <= KEEP_OPEN) return;
    // The least recently opened first, down to half: the directories in use now stay open.
    for (const [p, d] of this.open) {
      if (this.open.size <= KEEP_OPEN / 2) break;
      if (keep.has(d)) continue;
      fs.closeSync(d.fd);
      this.open.delete(p);
    }
  }

  close(): void {
    for (const d of [...this.open.values(), ...this.retired]) fs.closeSync(d.fd);
    this.open.clear();
    this.retired = [];
    fs.closeSync(this.rootFd);
  }
}
