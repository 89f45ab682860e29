import fs from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';

// The libc calls behind extended attributes (Node has none), through koffi's native module;
// also glibc's malloc_trim, which the idle daemon calls (releaseFreedMemory), and openat, mkdirat
// and renameat2, which the rebuild's restore calls on a directory's descriptor (rebuild/target-tree.ts:
// without them it names the file as /proc/self/fd/N/name, which costs a walk through /proc, and
// checks that a name is free with an lstat before the rename instead of RENAME_NOREPLACE).
// loadKoffi() is the one loader of koffi's module, for other libraries too (git/deflate.ts binds
// libdeflate with it).
// koffi is an FFI whose npm package carries prebuilt binaries per platform (no compiler, nothing
// downloaded at install); see docs/architecture.md for why it was chosen over @napi-rs/xattr and
// getfattr/setfattr (it alone gives the f* calls the fd-based restore needs, and errno codes).
//
// We load koffi's `.node` file ourselves with process.dlopen instead of importing koffi's
// JavaScript, so that the same code works from the sources, from the esbuild bundle (koffi.node
// copied next to dist/pacha.mjs) and from a single executable installed by the .deb
// (/usr/lib/pacha/koffi.node beside /usr/bin/pacha): see candidates().

type Koffi = typeof import('koffi');

/** The system calls, as koffi binds them: -1 and errno() on failure. */
export interface XattrCalls {
  llistxattr(path: string, list: Buffer | null, size: number): number;
  lgetxattr(path: string, name: string, value: Buffer | null, size: number): number;
  lsetxattr(path: string, name: string, value: Buffer, size: number, flags: number): number;
  lremovexattr(path: string, name: string): number;
  flistxattr(fd: number, list: Buffer | null, size: number): number;
  fgetxattr(fd: number, name: string, value: Buffer | null, size: number): number;
  fsetxattr(fd: number, name: string, value: Buffer, size: number, flags: number): number;
  fremovexattr(fd: number, name: string): number;
  /** errno of the last call, as its code ('ENODATA', 'ENOTSUP', ...). */
  errorCode(): string;
}

export type NativeXattr = { ok: true; calls: XattrCalls; from: string } | { ok: false; reason: string };

/** The *at calls of the restore, as koffi binds them: -1 and errno() on failure. */
export interface AtCalls {
  openat(dirfd: number, name: string, flags: number, mode: number): number;
  mkdirat(dirfd: number, name: string, mode: number): number;
  renameat2(olddirfd: number, oldname: string, newdirfd: number, newname: string, flags: number): number;
  /** Write out the file system holding fd (the restore's one wait for the disk, at its end). */
  syncfs(fd: number): number;
  /** The same on one of libuv's threads (the restore goes on meanwhile): its return value (no errno). */
  syncfsAsync(fd: number): Promise<number>;
  errorCode(): string;
}

/** The C declarations of the libc calls bound here, by name (the restore's file writers bind some of them on their threads). */
export const LIBC = {
  openat: 'int openat(int dirfd, const char *path, int flags, unsigned int mode)',
  mkdirat: 'int mkdirat(int dirfd, const char *path, unsigned int mode)',
  renameat2: 'int renameat2(int olddirfd, const char *oldpath, int newdirfd, const char *newpath, unsigned int flags)',
  unlinkat: 'int unlinkat(int dirfd, const char *path, int flags)',
  close: 'int close(int fd)',
  syncfs: 'int syncfs(int fd)',
  flistxattr: 'intptr_t flistxattr(int fd, void *list, size_t size)',
  llistxattr: 'intptr_t llistxattr(const char *path, void *list, size_t size)',
  symlinkat: 'int symlinkat(const char *target, int dirfd, const char *path)',
  fchownat: 'int fchownat(int dirfd, const char *path, unsigned int uid, unsigned int gid, int flags)',
  /** times: two struct timespec (64-bit seconds and nanoseconds each), access then modification. */
  utimensat: 'int utimensat(int dirfd, const char *path, const void *times, int flags)',
} as const;

let cached: NativeXattr | undefined;
let atCalls: AtCalls | null = null;
/** glibc's malloc_trim, bound with the xattr calls; null where the libc has none (musl). */
let mallocTrim: ((pad: number) => number) | null = null;

/** koffi.node files of koffi's npm package for this platform (glibc first, then musl); [] without it. */
export function npmBinaries(): string[] {
  try {
    const koffiMain = createRequire(import.meta.url).resolve('koffi');
    const pkg = createRequire(koffiMain).resolve(`@koromix/koffi-${process.platform}-${process.arch}/package.json`);
    const dir = path.dirname(pkg);
    const out = [path.join(dir, `${process.platform}_${process.arch}`, 'koffi.node')];
    if (process.platform === 'linux') out.push(path.join(dir, `musl_${process.arch}`, 'koffi.node'));
    return out;
  } catch {
    return []; // not installed from npm (the bundle or the .deb)
  }
}

/** Where koffi.node may be, most specific first. */
export function candidates(): string[] {
  const out: string[] = [];
  // Next to the running bundle (scripts/build.ts copies it there). In the sources this is
  // src/xattr/, where there is none.
  const here = typeof import.meta.dirname === 'string' ? import.meta.dirname : undefined;
  if (here) out.push(path.join(here, 'koffi.node'));
  // The .deb: /usr/bin/pacha (single executable) and /usr/lib/pacha/koffi.node.
  out.push(path.resolve(path.dirname(process.execPath), '../lib/pacha/koffi.node'));
  // A musl system fails to load the glibc file and takes the next one.
  out.push(...npmBinaries());
  return out;
}

function errnoNames(): Map<number, string> {
  const m = new Map<number, string>();
  for (const [name, n] of Object.entries(os.constants.errno)) if (!m.has(n)) m.set(n, name);
  // Linux has one number for both; callers test for ENOTSUP.
  if (os.constants.errno.EOPNOTSUPP !== undefined) m.set(os.constants.errno.EOPNOTSUPP, 'ENOTSUP');
  return m;
}

function bind(koffi: Koffi): XattrCalls {
  const libc = koffi.load('libc.so.6');
  const names = errnoNames();
  const f = libc.func.bind(libc);
  try {
    mallocTrim = f('int malloc_trim(size_t pad)');
  } catch {
    mallocTrim = null;
  }
  const errorCode = () => {
    const n = koffi.errno();
    return names.get(n) ?? `errno ${n}`;
  };
  try {
    const syncfs = f(LIBC.syncfs);
    atCalls = {
      openat: f(LIBC.openat),
      mkdirat: f(LIBC.mkdirat),
      renameat2: f(LIBC.renameat2),
      syncfs,
      syncfsAsync: (fd) => new Promise((resolve, reject) => syncfs.async(fd, (err: unknown, r: number) => (err ? reject(err instanceof Error ? err : new Error(String(err))) : resolve(r)))),
      errorCode,
    };
  } catch {
    atCalls = null; // a libc without renameat2 (glibc before 2.28)
  }
  const calls: Omit<XattrCalls, 'errorCode'> = {
    llistxattr: f(LIBC.llistxattr),
    lgetxattr: f('intptr_t lgetxattr(const char *path, const char *name, void *value, size_t size)'),
    lsetxattr: f('int lsetxattr(const char *path, const char *name, const void *value, size_t size, int flags)'),
    lremovexattr: f('int lremovexattr(const char *path, const char *name)'),
    flistxattr: f(LIBC.flistxattr),
    fgetxattr: f('intptr_t fgetxattr(int fd, const char *name, void *value, size_t size)'),
    fsetxattr: f('int fsetxattr(int fd, const char *name, const void *value, size_t size, int flags)'),
    fremovexattr: f('int fremovexattr(int fd, const char *name)'),
  };
  return { ...calls, errorCode };
}

let koffiLoaded: { ok: true; koffi: Koffi; file: string } | { ok: false; reason: string } | undefined;

/**
 * koffi's native module, loaded once from the first of candidates() that loads; or why it could
 * not be. Also for other libraries bound through it (git/deflate.ts binds libdeflate).
 */
export function loadKoffi(): { ok: true; koffi: Koffi; file: string } | { ok: false; reason: string } {
  if (koffiLoaded) return koffiLoaded;
  const tried: string[] = [];
  for (const file of candidates()) {
    if (!fs.existsSync(file)) continue;
    try {
      const mod = { exports: {} as Koffi };
      process.dlopen(mod, file);
      const koffi = mod.exports;
      if (typeof koffi.load !== 'function' || typeof koffi.errno !== 'function') throw new Error('not a koffi module');
      koffiLoaded = { ok: true, koffi, file };
      return koffiLoaded;
    } catch (e) {
      tried.push(`${file}: ${(e as Error).message}`);
    }
  }
  koffiLoaded = {
    ok: false,
    reason:
      tried.length > 0
        ? `cannot load koffi.node (${tried.join('; ')})`
        : 'koffi.node not found (looked next to the program, in ../lib/pacha/ beside the executable and in node_modules)',
  };
  return koffiLoaded;
}

/** The calls, or why they are not available (one warning for the caller to show). Loaded once. */
export function nativeXattr(): NativeXattr {
  if (cached) return cached;
  if (process.platform !== 'linux') {
    cached = { ok: false, reason: `extended attributes are supported on Linux only (this is ${process.platform})` };
    return cached;
  }
  const k = loadKoffi();
  if (!k.ok) {
    cached = k;
    return cached;
  }
  try {
    cached = { ok: true, calls: bind(k.koffi), from: k.file };
  } catch (e) {
    cached = { ok: false, reason: `cannot bind the extended attribute calls of libc through ${k.file}: ${(e as Error).message}` };
  }
  return cached;
}

/**
 * glibc's malloc_trim(0): hand back to the system the memory a large piece of work (a daemon's
 * full snapshot, its deflate thread) freed but malloc kept in its arenas. False where it is not
 * available (no koffi.node, or a libc without it).
 */
export function releaseFreedMemory(): boolean {
  if (!nativeXattr().ok || mallocTrim === null) return false;
  mallocTrim(0);
  return true;
}

/** openat, mkdirat and renameat2, or null where they are not available (no koffi.node, an old libc). */
export function nativeAt(): AtCalls | null {
  return nativeXattr().ok ? atCalls : null;
}
