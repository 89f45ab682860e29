import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import type { Logger } from '../log.ts';
import { escapeTerminal } from '../terminal.ts';
import type { OwnerResolver } from './owners.ts';
import type { Existing, Plan, PlannedItem } from './plan.ts';
import type { BlobSource } from './blob-source.ts';
import { TargetChangedError, TargetTree, sameIdentity, type Identity, type TargetDir } from './target-tree.ts';
import { nativeAt } from '../xattr/native.ts';
import type { RestoreItem } from './validate.ts';
import type { XattrRestorer } from '../xattr/xattr.ts';
import { FileWriters, type WriteJob, type WriteOutcome } from './file-writers.ts';

// Puts the planned entries in place, every write and metadata change through a descriptor of
// a verified directory (target-tree.ts): nothing is ever done by a path a local user could
// redirect. Files and symlinks are written under a temporary name in their own directory, given
// their metadata, then renamed onto their name. A file that replaces an existing one is fsynced
// before its rename, so that path holds either the old or the new version, complete with its
// metadata, whenever the machine stops. A new path had nothing to lose: its file is not waited
// for one by one (that wait was most of a rebuild's time), and the restore ends with one syncfs
// of each file system it wrote to (FinalSync), before the rebuild reports anything done; a
// rebuild stopped before that is run again, and its plan hashes whatever it finds (plan.ts). Whatever is replaced or deleted is first kept
// under <state>/replaced/<time>/<host path>. Directories are created private (0700) and get
// their real metadata last, deepest first, once their contents are in place.
//
// The kernel's work for each file (create, write, chown, utimes, chmod, rename) is most of a
// large restore, from one thread: new files whose content is in memory, and new symlinks, go to
// threads (file-writers.ts) with the descriptor of their verified directory, and large files are
// streamed while the loop goes on; directories' metadata waits for all of them.
//
// A path whose type or identity changed since the plan is refused (TargetChangedError): it is
// reported, left as it is with everything below it, and the restore goes on with the rest;
// the rebuild then fails before its post hooks, listing every refused path (rebuild.ts).

export interface RestoreOptions {
  root: string;
  /** <state>/replaced/<ISO time>: created on first use. */
  keepDir: string;
  resolver: OwnerResolver;
  log: Logger;
  /** Where the contents come from (the staged repository). */
  blobs: BlobSource;
  /** Small files written before their fsyncs are awaited together. */
  batch?: number;
  /** Applies each record's extended attributes (absent: left as they are). */
  xattrs?: XattrRestorer;
  /** Threads that write new files (file-writers.ts); default: by how many there are (FileWriters.threadsFor), 0: none. */
  threads?: number;
  /** Called with a batch's host paths just before it goes to a thread (tests: a local user acting at that moment). */
  beforeThreadBatch?: (hostPaths: string[]) => void;
}

/** What a restore did, path by path; also the counts of a rebuild's summary and callback. */
export interface RestoreCounts {
  created: number;
  replaced: number;
  unchanged: number;
  deleted: number;
  metadataFixed: number;
  bytes: number;
}

export interface RefusedPath {
  hostPath: string;
  reason: string;
  /** Entries of the plan below it, left alone with it. */
  skipped: number;
}

export interface RestoreResult extends RestoreCounts {
  /** Host paths that were kept under keepDir. */
  kept: string[];
  /** Paths that changed since the plan: left alone, with everything below them. */
  refused: RefusedPath[];
  phases: { restore: number; metadata: number; sync: number };
}

/** Time as utimes takes it: seconds in a double (about 0.2 µs of precision today; Node has no ns utimes). */
export function seconds(ns: bigint): number {
  return Number(ns / 1_000_000_000n) + Number(ns % 1_000_000_000n) / 1e9;
}

// ---- metadata, one path at a time, through its descriptor -------------------------------

/** What metadata is applied to: a file's or directory's descriptor, or a symlink's name under a verified directory. */
export type MetadataTarget = { fd: number } | { linkPath: string };
export interface Owner {
  uid: number;
  gid: number;
}
export type MetadataStep = (t: MetadataTarget, it: RestoreItem, owner: Owner) => void;

const setOwner: MetadataStep = (t, _it, o) => ('fd' in t ? fs.fchownSync(t.fd, o.uid, o.gid) : fs.lchownSync(t.linkPath, o.uid, o.gid));
const setTimes: MetadataStep = (t, it) => {
  const s = seconds(it.mtimeNs);
  if ('fd' in t) fs.futimesSync(t.fd, s, s);
  else fs.lutimesSync(t.linkPath, s, s);
};
// A symlink's own mode means nothing on Linux (and cannot be set).
const setMode: MetadataStep = (t, it) => {
  if ('fd' in t) fs.fchmodSync(t.fd, it.mode);
};

/** Extended attributes and ACLs (xattr/xattr.ts): ACL ids by name, capabilities after the chown. */
const setXattrs =
  (x: XattrRestorer | undefined): MetadataStep =>
  (t, it) =>
    x?.apply(t, it.xattrs, it.hostPath);

/**
 * The design's order for every path, after its contents: owner, then extended attributes and
 * ACLs (a chown clears security.capability), times, and the mode last (chown clears
 * setuid/setgid; setting an ACL rewrites the group bits).
 */
export function metadataSteps(xattrs?: XattrRestorer): readonly MetadataStep[] {
  return [setOwner, setXattrs(xattrs), setTimes, setMode];
}

// ---------------------------------------------------------------------------------------

const fsyncFd = promisify(fs.fsync);
/** A batch of new files goes to a thread at this many files or bytes, whichever comes first. */
const THREAD_BATCH_FILES = 64;
const THREAD_BATCH_BYTES = 1024 * 1024;
/** Large files streamed from the pack at the same time. */
const STREAMS_AT_ONCE = 2;
const EMPTY = Buffer.alloc(0);
let tmpCounter = 0;
function tempName(name: string): string {
  return `.${name.slice(0, 100)}.pacha-${process.pid}-${++tmpCounter}`;
}

function formatRate(bytes: number, ms: number): string {
  const mb = bytes / 1048576 / Math.max(ms / 1000, 0.001);
  return `${mb.toFixed(1)} MiB/s`;
}

const dirname = path.posix.dirname;
const basename = path.posix.basename;

function identity(ex: Pick<Existing, 'dev' | 'ino'> | undefined): Identity | undefined {
  return ex ? { dev: ex.dev, ino: ex.ino } : undefined;
}

/**
 * The restore's one wait for the disk: a directory of each file system files were written to,
 * synced at the end. The disk starts on it (syncfs on a libuv thread) while the directories get
 * their metadata, the restore's last pass: the last syncfs, after that pass, still covers
 * everything. (Started earlier, every 32 MiB during the restore, it made the restore slower by
 * more than it saved: docs/benchmarks-development.md.)
 */
class FinalSync {
  private readonly tree: TargetTree;
  private readonly at = nativeAt();
  /** device -> that directory opened again (the tree closes its own descriptors as it goes). */
  private readonly fds = new Map<bigint, number>();
  private readonly seen = new Set<string>();
  /** The syncfs started early (its outcome does not matter: the last one is checked). */
  private running: Promise<void> | undefined;

  constructor(tree: TargetTree) {
    this.tree = tree;
  }

  /** Without syncfs (no koffi) every file is fsynced before its rename instead. */
  waitsForDisk(p: PlannedItem): boolean {
    return this.at === null || p.action !== 'create';
  }

  /** A file is being written in `dir`. */
  note(dir: TargetDir): void {
    if (this.at === null || this.seen.has(dir.hostPath)) return;
    this.seen.add(dir.hostPath);
    const dev = this.tree.expectedAt(dir.hostPath)?.dev ?? BigInt(fs.fstatSync(dir.fd).dev);
    if (!this.fds.has(dev)) this.fds.set(dev, this.tree.reopen(dir));
  }

  /** Have the disk write out what is in place so far, unless it is already at it. */
  start(): void {
    if (this.at === null || this.running || this.fds.size === 0) return;
    const at = this.at;
    this.running = Promise.all([...this.fds.values()].map((fd) => at.syncfsAsync(fd))).then(
      () => {
        this.running = undefined;
      },
      () => {
        this.running = undefined;
      },
    );
  }

  async sync(): Promise<void> {
    await this.running;
    for (const fd of this.fds.values()) {
      if (this.at!.syncfs(fd) !== 0) throw new Error(`the restored files could not all be written to disk (syncfs: ${this.at!.errorCode()})`);
    }
  }

  /** After the early syncfs (it uses the descriptors). */
  async close(): Promise<void> {
    await this.running;
    for (const fd of this.fds.values()) fs.closeSync(fd);
    this.fds.clear();
  }
}

export async function restorePlan(plan: Plan, opts: RestoreOptions): Promise<RestoreResult> {
  const tree = new TargetTree(opts.root);
  const disk = new FinalSync(tree);
  try {
    const res = await restoreInto(tree, disk, plan, opts);
    const t = Date.now();
    await disk.sync();
    res.phases.sync = Date.now() - t;
    return res;
  } finally {
    await disk.close();
    tree.close();
  }
}

async function restoreInto(tree: TargetTree, disk: FinalSync, plan: Plan, opts: RestoreOptions): Promise<RestoreResult> {
  const { resolver, log, blobs } = opts;
  const steps = metadataSteps(opts.xattrs);
  const applyMetadata = (t: MetadataTarget, it: RestoreItem, owner: Owner) => {
    for (const step of steps) step(t, it, owner);
  };
  const res: RestoreResult = { created: 0, replaced: 0, unchanged: 0, deleted: 0, metadataFixed: 0, bytes: 0, kept: [], refused: [], phases: { restore: 0, metadata: 0, sync: 0 } };
  const t0 = Date.now();
  const ownerOf = (it: RestoreItem): Owner => ({ uid: resolver.uid(it.user, it.uid, it.hostPath), gid: resolver.gid(it.group, it.gid, it.hostPath) });
  for (const p of plan.items) if (p.existing) tree.expect(p.item.hostPath, identity(p.existing)!);

  // Refusals: the path is left alone, and so is everything below it.
  const refused = new Map<string, RefusedPath>();
  const refusedAbove = (hp: string): RefusedPath | undefined => {
    if (refused.size === 0) return undefined;
    for (let d = hp; d !== '/'; d = dirname(d)) {
      const r = refused.get(d);
      if (r) return r;
    }
    return undefined;
  };
  /** A path (or the ancestor it names) changed since the plan: left alone, with everything below it. */
  const refuse = (e: TargetChangedError) => {
    refused.set(e.hostPath, { hostPath: e.hostPath, reason: e.reason, skipped: 0 });
    tree.forget(e.hostPath);
    log.warn(e.message);
  };
  /** Runs one path's work; a TargetChangedError refuses that path (or the ancestor it names). */
  const guard = async <T>(hp: string, f: () => T | Promise<T>): Promise<T | undefined> => {
    if (refusedAbove(hp)) return undefined;
    try {
      return await f();
    } catch (e) {
      if (!(e instanceof TargetChangedError)) throw e;
      refuse(e);
      return undefined;
    }
  };

  const keep = (hp: string, ex: Existing, move: boolean) => {
    const dest = path.join(opts.keepDir, hp);
    fs.mkdirSync(path.dirname(dest), { recursive: true, mode: 0o700 });
    const dir = tree.dir(dirname(hp));
    const name = basename(hp);
    if (!move && ex.type === 'file') {
      // A copy: the file stays in place until the new one is renamed over it.
      const fd = tree.openExisting(hp, identity(ex));
      try {
        fs.copyFileSync(`/proc/self/fd/${fd}`, dest);
        const st = fs.fstatSync(fd);
        fs.utimesSync(dest, st.atime, st.mtime);
      } finally {
        fs.closeSync(fd);
      }
    } else if (!move && ex.type === 'symlink') {
      tree.checkLink(hp, identity(ex));
      fs.symlinkSync(fs.readlinkSync(dir.at(name)), dest);
    } else {
      // Moved: renaming a name never follows it, whatever it has become.
      const st = tree.lstat(dir, name);
      if (!st) throw new TargetChangedError(hp, 'disappeared');
      if (!sameIdentity(st, ex)) throw new TargetChangedError(hp, 'was replaced by something else');
      tree.forget(hp);
      try {
        fs.renameSync(dir.at(name), dest);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EXDEV') throw e;
        // The state dir is on another filesystem: keep it beside itself rather than copy a tree
        // a local user may be changing, then delete it by path.
        const aside = `.${name.slice(0, 100)}.pacha-replaced-${path.basename(opts.keepDir).replace(/[^0-9A-Za-z]/g, '')}`;
        fs.renameSync(dir.at(name), dir.at(aside));
        log.warn(`${escapeTerminal(hp)} is kept beside itself as ${escapeTerminal(aside)} (the state dir is on another filesystem)`);
      }
    }
    res.kept.push(hp);
  };

  /** Rename a finished temporary file or symlink onto its name, if that name is still as the plan saw it. */
  const place = (dir: TargetDir, tmp: string, p: PlannedItem) => {
    const name = basename(p.item.hostPath);
    const stays = p.action === 'replace' && (p.existing!.type === 'file' || p.existing!.type === 'symlink');
    // Created, or moved aside: nothing may be there now.
    if (!stays) return tree.renameToFree(dir, tmp, name, p.item.hostPath);
    const st = tree.lstat(dir, name);
    if (!st || !sameIdentity(st, p.existing!)) throw new TargetChangedError(p.item.hostPath, st ? 'was replaced by something else' : 'disappeared');
    fs.renameSync(dir.at(tmp), dir.at(name));
  };

  // Directories above the roots (e.g. /etc for a watched /etc/nginx) are not in the snapshot:
  // create the missing ones as a package manager would (0755), walking down from the root.
  const inSnapshot = new Set(plan.items.map((p) => p.item.hostPath));
  const parents = [...new Set(plan.items.map((p) => dirname(p.item.hostPath)).filter((d) => !inSnapshot.has(d)))].sort();
  for (const d of parents) {
    const parts = d.split('/').filter(Boolean);
    for (let i = 1; i <= parts.length; i++) {
      const hp = '/' + parts.slice(0, i).join('/');
      await guard(hp, () => tree.mkdirAbove(hp));
    }
  }

  /** A directory of the plan that is missing (or is something else now): created, private until its metadata (last). */
  const makeDir = async (p: PlannedItem) => {
    const it = p.item;
    if (p.action === 'unchanged') return;
    const ok = await guard(it.hostPath, () => {
      if (p.action === 'replace') keep(it.hostPath, p.existing!, true);
      tree.mkdir(it.hostPath);
      return true;
    });
    tree.trim(inUse);
    if (!ok) return;
    log.debug(`mkdir ${escapeTerminal(it.hostPath)}`);
    res[p.action === 'create' ? 'created' : 'replaced']++;
  };

  // One pass in path order (a directory before what is in it): directories, files, symlinks.
  // Small files are written in batches: each under its temporary name with its metadata set on
  // the descriptor, then the batch's fsyncs (of replaced files) all at once, then the renames.
  interface Pending {
    fd: number;
    dir: TargetDir;
    tmp: string;
    p: PlannedItem;
    started: number;
  }
  let batch: Pending[] = [];
  const done = (p: PlannedItem, started: number) => {
    const it = p.item;
    res[p.action === 'create' ? 'created' : 'replaced']++;
    if (it.type === 'file') log.progress(`${p.action === 'create' ? 'created' : 'replaced'} ${it.hostPath} ${it.size} bytes ${formatRate(it.size, Date.now() - started)}`);
    if (log.verbose) log.debug(`${p.action} ${escapeTerminal(it.hostPath)}`);
  };
  const removeTemp = (x: { dir: TargetDir; tmp: string }) => fs.rmSync(x.dir.at(x.tmp), { force: true });
  // One batch settles (fsyncs, then renames) while the next one is being written.
  const settle = async (b: Pending[]) => {
    try {
      await Promise.all(b.filter((x) => disk.waitsForDisk(x.p)).map((x) => fsyncFd(x.fd)));
    } catch (e) {
      for (const x of b) removeTemp(x);
      throw e;
    } finally {
      for (const x of b) fs.closeSync(x.fd);
    }
    for (let i = 0; i < b.length; i++) {
      const x = b[i];
      try {
        const placed = await guard(x.p.item.hostPath, () => {
          place(x.dir, x.tmp, x.p);
          return true;
        });
        if (placed) done(x.p, x.started);
        else removeTemp(x);
      } catch (e) {
        for (const y of b.slice(i)) removeTemp(y);
        throw e;
      }
    }
  };
  let settling: Promise<void> = Promise.resolve();
  /** The batch settling on the main thread: its directories stay open. */
  let settlingDirs: TargetDir[] = [];
  const flush = async () => {
    const b = batch;
    batch = [];
    await settling;
    settlingDirs = b.map((x) => x.dir);
    tree.trim(inUse); // only this batch and the threads' files hold directories now
    settling = settle(b);
    settling.catch(() => undefined); // handled where it is awaited (next flush, or the end)
  };

  // New files whose content is in memory, and new symlinks, with threads (file-writers.ts): each
  // one's calls are made on a thread, on the descriptor of its directory, verified here and kept
  // open until the batch is back. A batch goes when it has THREAD_BATCH_FILES entries or THREAD_BATCH_BYTES.
  interface ThreadFile {
    job: WriteJob;
    dir: TargetDir;
    p: PlannedItem;
    started: number;
  }
  const newFiles = plan.items.filter((p) => p.item.type !== 'dir' && p.action === 'create').length;
  const writers = FileWriters.start(opts.threads ?? FileWriters.threadsFor(newFiles));
  if (writers) log.debug(`new files written by ${writers.threads} thread(s)`);
  /** Work that finishes after the loop moved on (a thread's batch, a large file's stream), with the directories it holds open. */
  const inFlight = new Map<Promise<void>, TargetDir[]>();
  const streams = new Set<Promise<void>>();
  let forThreads: ThreadFile[] = [];
  let forThreadsBytes = 0;
  /** The first failure of work that finished after the loop had moved on: the restore fails with it. */
  let laterError: unknown;
  const later = (e: unknown) => {
    if (e instanceof TargetChangedError) refuse(e);
    else laterError ??= e;
  };
  const inUse = () => [...settlingDirs, ...forThreads.map((x) => x.dir), ...[...inFlight.values()].flat()];
  const xattrSteps = steps.slice(1); // a thread did the owner (steps[0]) before handing a file back
  /** A file or symlink a thread handed back: what is left of its metadata (by the file's descriptor, the symlink's name), then its rename, here. */
  const finishHere = (x: ThreadFile, o: WriteOutcome) => {
    if (o.kind === 'xattrs') {
      const fd = o.fd;
      try {
        const t: MetadataTarget = fd === undefined ? { linkPath: x.dir.at(x.job.tmp) } : { fd };
        for (const step of xattrSteps) step(t, x.p.item, { uid: x.job.uid, gid: x.job.gid });
      } catch (e) {
        removeTemp({ dir: x.dir, tmp: x.job.tmp });
        throw e;
      } finally {
        if (fd !== undefined) fs.closeSync(fd);
      }
    }
    placeNow(x.dir, x.job.tmp, x.p, x.started);
  };
  const outcome = (x: ThreadFile, o: WriteOutcome) => {
    const hp = x.p.item.hostPath;
    try {
      if (o.kind === 'failed') throw o.error;
      if (o.kind === 'appeared') throw new TargetChangedError(hp, 'appeared');
      if (o.kind === 'placed') done(x.p, x.started);
      else finishHere(x, o);
      res.bytes += x.job.data.length;
    } catch (e) {
      later(e);
    }
  };
  const toThreads = async () => {
    const b = forThreads;
    forThreads = [];
    forThreadsBytes = 0;
    if (b.length === 0) return;
    opts.beforeThreadBatch?.(b.map((x) => x.p.item.hostPath));
    const written = writers!.write(b.map((x) => x.job)).then(
      (outs) => outs.forEach((o, i) => outcome(b[i], o)),
      (e: unknown) => {
        // A thread that died: what it did with these files is unknown; no temporary file stays.
        laterError ??= e;
        for (const x of b) removeTemp({ dir: x.dir, tmp: x.job.tmp });
      },
    );
    inFlight.set(written, b.map((x) => x.dir));
    void written.finally(() => inFlight.delete(written));
    tree.trim(inUse);
    // Two batches per thread: one being written, the next one ready.
    while (writers!.pending >= 2 * writers!.threads) await Promise.race(inFlight.keys());
  };

  /** A finished temporary file or symlink that is not part of a batch: into place, or removed. */
  const placeNow = (dir: TargetDir, tmp: string, p: PlannedItem, started: number) => {
    try {
      place(dir, tmp, p);
    } catch (e) {
      removeTemp({ dir, tmp });
      throw e;
    }
    done(p, started);
  };

  const restoreOne = async (p: PlannedItem): Promise<Pending | undefined> => {
    const it = p.item;
    const name = basename(it.hostPath);
    const owner = ownerOf(it);
    if (p.action === 'unchanged') {
      res.unchanged++;
      if (p.changes.length === 0) return undefined;
      if (it.type === 'symlink') {
        const dir = tree.checkLink(it.hostPath, identity(p.existing));
        applyMetadata({ linkPath: dir.at(name) }, it, owner);
      } else {
        const fd = tree.openExisting(it.hostPath, identity(p.existing));
        try {
          applyMetadata({ fd }, it, owner);
        } finally {
          fs.closeSync(fd);
        }
      }
      res.metadataFixed++;
      return undefined;
    }
    // A file or symlink is copied (the old one stays in place until the rename); anything else is moved aside.
    if (p.action === 'replace') keep(it.hostPath, p.existing!, p.existing!.type !== 'file' && p.existing!.type !== 'symlink');
    const dir = tree.dir(dirname(it.hostPath));
    disk.note(dir);
    const tmp = tempName(name);
    const started = Date.now();
    const xattrsJob = opts.xattrs?.active ? (it.xattrs ? 2 : 1) : 0;
    if (it.type === 'symlink' && writers && p.action === 'create' && FileWriters.symlinks) {
      const job: WriteJob = { dirFd: dir.fd, tmp, name, data: EMPTY, target: it.target!, uid: owner.uid, gid: owner.gid, mtime: 0, mtimeNs: it.mtimeNs, mode: it.mode, xattrs: xattrsJob };
      forThreads.push({ job, dir, p, started });
      return undefined;
    }
    if (it.type === 'symlink') {
      try {
        fs.symlinkSync(it.target!, dir.at(tmp));
        applyMetadata({ linkPath: dir.at(tmp) }, it, owner);
      } catch (e) {
        removeTemp({ dir, tmp });
        throw e;
      }
      placeNow(dir, tmp, p, started);
      return undefined;
    }
    const data = blobs.tryRead(it.oid!, it.size);
    // Validation checked every size already; this guards against a repository changed since.
    const sizeCheck = (written: number) => {
      if (written !== it.size) throw new Error(`${escapeTerminal(it.hostPath)}: the snapshot's content is ${written} bytes, its metadata says ${it.size}`);
    };
    if (data && writers && p.action === 'create') {
      sizeCheck(data.length);
      forThreads.push({ job: { dirFd: dir.fd, tmp, name, data, uid: owner.uid, gid: owner.gid, mtime: seconds(it.mtimeNs), mtimeNs: it.mtimeNs, mode: it.mode, xattrs: xattrsJob }, dir, p, started });
      forThreadsBytes += data.length;
      return undefined;
    }
    const fd = tree.createFile(dir, tmp, 0o600);
    if (data) {
      try {
        for (let off = 0; off < data.length; ) off += fs.writeSync(fd, data, off, data.length - off);
        sizeCheck(data.length);
        applyMetadata({ fd }, it, owner);
      } catch (e) {
        fs.closeSync(fd);
        removeTemp({ dir, tmp });
        throw e;
      }
      res.bytes += data.length;
      return { fd, dir, tmp, p, started };
    }
    // A large file: streamed from the pack (inflated on libuv's threads) while the loop goes on.
    const streamed = (async () => {
      try {
        const written = await blobs.writeTo(it.oid!, fd);
        sizeCheck(written);
        applyMetadata({ fd }, it, owner);
        res.bytes += written;
        if (disk.waitsForDisk(p)) await fsyncFd(fd);
      } catch (e) {
        fs.closeSync(fd);
        removeTemp({ dir, tmp });
        throw e;
      }
      fs.closeSync(fd);
      placeNow(dir, tmp, p, started);
    })().catch(later);
    inFlight.set(streamed, [dir]);
    streams.add(streamed);
    void streamed.finally(() => {
      inFlight.delete(streamed);
      streams.delete(streamed);
    });
    // Each holds a descriptor and its buffers.
    while (streams.size >= STREAMS_AT_ONCE) await Promise.race(streams);
    return undefined;
  };

  const batchSize = Math.max(1, opts.batch ?? 256);
  try {
    for (const p of plan.items) {
      if (p.item.type === 'dir') {
        await makeDir(p);
        continue;
      }
      const pending = await guard(p.item.hostPath, () => restoreOne(p));
      if (pending) batch.push(pending);
      if (batch.length >= batchSize) await flush();
      if (forThreads.length >= THREAD_BATCH_FILES || forThreadsBytes >= THREAD_BATCH_BYTES) await toThreads();
      if (laterError) throw laterError;
    }
    await toThreads();
    await flush();
    await settling;
    await Promise.all(inFlight.keys());
    if (laterError) throw laterError;
  } finally {
    // After a failure: no temporary file is left behind.
    await settling.catch(() => undefined);
    await Promise.all(inFlight.keys());
    for (const x of batch) {
      fs.closeSync(x.fd);
      removeTemp(x);
    }
    writers?.close();
  }

  // --delete: whatever the snapshot does not have is moved under replaced/.
  for (const d of plan.deletes) {
    const ok = await guard(d.hostPath, () => {
      keep(d.hostPath, d.existing, true);
      return true;
    });
    if (!ok) continue;
    res.deleted++;
    log.debug(`deleted ${escapeTerminal(d.hostPath)}`);
  }
  res.phases.restore = Date.now() - t0;

  // Then directory metadata, deepest first, while the disk writes out the files.
  disk.start();
  const t1 = Date.now();
  const dirs = plan.items.filter((p) => p.item.type === 'dir');
  dirs.sort((a, b) => b.item.path.split('/').length - a.item.path.split('/').length);
  for (const p of dirs) {
    const it = p.item;
    const ok = await guard(it.hostPath, () => {
      applyMetadata({ fd: tree.dir(it.hostPath).fd }, it, ownerOf(it));
      return true;
    });
    tree.trim([]);
    if (ok && p.action === 'unchanged') {
      res.unchanged++;
      if (p.changes.length) res.metadataFixed++;
    }
  }
  res.phases.metadata = Date.now() - t1;
  res.refused = [...refused.values()];
  for (const r of res.refused) r.skipped = plan.items.filter((p) => p.item.hostPath.startsWith(r.hostPath + '/')).length;
  return res;
}
