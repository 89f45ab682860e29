import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { hostPath } from '../paths.ts';
import type { Logger } from '../log.ts';
import type { OwnerResolver } from './owners.ts';
import type { Plan, PlannedItem } from './plan.ts';
import type { BlobSource } from './blob-source.ts';
import type { RestoreItem } from './validate.ts';

// Puts the planned entries in place. Files and symlinks are written under a temporary name in
// their own directory, given their owner, mode and mtime, fsynced, then renamed over the old
// path, so every path holds either the old or the new version, complete with its metadata.
// Whatever is replaced or deleted is first kept under <state>/replaced/<time>/<host path>.
// Directories are created private (0700) and get their real metadata last, deepest first,
// once their contents are in place (creating a child changes a directory's mtime).

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

export interface RestoreResult extends RestoreCounts {
  /** Host paths that were kept under keepDir. */
  kept: string[];
  phases: { restore: number; metadata: number };
}

const fsyncFd = promisify(fs.fsync);
const CREATE_FLAGS = fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_NOFOLLOW;
let tmpCounter = 0;
function tempName(local: string): string {
  return path.join(path.dirname(local), `.${path.basename(local).slice(0, 100)}.pacha-${process.pid}-${++tmpCounter}`);
}

/** Time as utimes takes it: seconds in a double (about 0.2 µs of precision today; Node has no ns utimes). */
export function seconds(ns: bigint): number {
  return Number(ns / 1_000_000_000n) + Number(ns % 1_000_000_000n) / 1e9;
}

function formatRate(bytes: number, ms: number): string {
  const mb = bytes / 1048576 / Math.max(ms / 1000, 0.001);
  return `${mb.toFixed(1)} MiB/s`;
}

export async function restorePlan(plan: Plan, opts: RestoreOptions): Promise<RestoreResult> {
  const { root, resolver, log } = opts;
  const res: RestoreResult = { created: 0, replaced: 0, unchanged: 0, deleted: 0, metadataFixed: 0, bytes: 0, kept: [], phases: { restore: 0, metadata: 0 } };
  const t0 = Date.now();
  const blobs = opts.blobs;
  const ownerOf = (it: RestoreItem) => ({ uid: resolver.uid(it.user, it.uid, it.hostPath), gid: resolver.gid(it.group, it.gid, it.hostPath) });

  const keep = async (hp: string, move: boolean) => {
    const local = hostPath(hp, root);
    const dest = path.join(opts.keepDir, hp);
    await fsp.mkdir(path.dirname(dest), { recursive: true, mode: 0o700 });
    if (move) {
      try {
        await fsp.rename(local, dest);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EXDEV') throw e;
        await fsp.cp(local, dest, { recursive: true, preserveTimestamps: true, verbatimSymlinks: true });
        await fsp.rm(local, { recursive: true, force: true });
      }
    } else {
      await fsp.cp(local, dest, { recursive: true, preserveTimestamps: true, verbatimSymlinks: true });
    }
    res.kept.push(hp);
  };

  // Directories above the roots (e.g. /etc for a watched /etc/nginx) are not in the snapshot:
  // create the missing ones as a package manager would (0755).
  const inSnapshot = new Set(plan.items.map((p) => p.item.hostPath));
  const parents = new Set(plan.items.map((p) => path.posix.dirname(p.item.hostPath)).filter((d) => !inSnapshot.has(d)));
  for (const d of parents) await fsp.mkdir(hostPath(d, root), { recursive: true, mode: 0o755 });

  // Pass 1, in path order (parents first): directories.
  for (const p of plan.items) {
    const it = p.item;
    if (it.type !== 'dir' || p.action === 'unchanged') continue;
    if (p.action === 'replace') await keep(it.hostPath, true);
    await fsp.mkdir(hostPath(it.hostPath, root), { mode: 0o700 });
    log.debug(`mkdir ${it.hostPath}`);
    res[p.action === 'create' ? 'created' : 'replaced']++;
  }

  // Pass 2: files and symlinks; their directories all exist now. Small files are written in
  // batches: each under its temporary name with owner, mode and mtime set on the descriptor,
  // then the batch's fsyncs all at once (they overlap, and the journal commits them together,
  // instead of each file's commit stalling the next file's creation), then the renames.
  interface Pending {
    fd: number;
    tmp: string;
    local: string;
    p: PlannedItem;
    started: number;
  }
  let batch: Pending[] = [];
  const done = (p: PlannedItem, started: number) => {
    const it = p.item;
    res[p.action === 'create' ? 'created' : 'replaced']++;
    if (it.type === 'file') log.progress(`${p.action === 'create' ? 'created' : 'replaced'} ${it.hostPath} ${it.size} bytes ${formatRate(it.size, Date.now() - started)}`);
    if (log.verbose) log.debug(`${p.action} ${it.hostPath}`);
  };
  // One batch settles (fsyncs, then renames) while the next one is being written.
  const settle = async (b: Pending[]) => {
    try {
      await Promise.all(b.map((x) => fsyncFd(x.fd)));
    } catch (e) {
      for (const x of b) fs.rmSync(x.tmp, { force: true });
      throw e;
    } finally {
      for (const x of b) fs.closeSync(x.fd);
    }
    for (const x of b) {
      fs.renameSync(x.tmp, x.local);
      done(x.p, x.started);
    }
  };
  let settling: Promise<void> = Promise.resolve();
  const flush = async () => {
    const b = batch;
    batch = [];
    await settling;
    settling = settle(b);
    settling.catch(() => undefined); // handled where it is awaited (next flush, or the end)
  };

  const restoreOne = async (p: PlannedItem): Promise<Pending | undefined> => {
    const it = p.item;
    const local = hostPath(it.hostPath, root);
    const { uid, gid } = ownerOf(it);
    if (p.action === 'unchanged') {
      res.unchanged++;
      if (p.changes.length === 0) return undefined;
      if (it.type === 'symlink') {
        await fsp.lchown(local, uid, gid);
        await fsp.lutimes(local, seconds(it.mtimeNs), seconds(it.mtimeNs));
      } else {
        await fsp.chown(local, uid, gid);
        await fsp.chmod(local, it.mode); // after chown: chown clears setuid/setgid
        await fsp.utimes(local, seconds(it.mtimeNs), seconds(it.mtimeNs));
      }
      res.metadataFixed++;
      return undefined;
    }
    // A file is copied (the old one stays in place until the rename); anything else is moved aside.
    if (p.action === 'replace') await keep(it.hostPath, p.existing?.type !== 'file' && p.existing?.type !== 'symlink');
    const tmp = tempName(local);
    const started = Date.now();
    try {
      if (it.type === 'symlink') {
        fs.symlinkSync(it.target!, tmp);
        fs.lchownSync(tmp, uid, gid);
        fs.lutimesSync(tmp, seconds(it.mtimeNs), seconds(it.mtimeNs));
        fs.renameSync(tmp, local);
        done(p, started);
        return undefined;
      }
      const data = blobs.tryRead(it.oid!, it.size);
      if (data) {
        if (data.length !== it.size) throw new Error(`${it.hostPath}: the snapshot's content is ${data.length} bytes, its metadata says ${it.size}`);
        const fd = fs.openSync(tmp, CREATE_FLAGS, 0o600);
        try {
          for (let off = 0; off < data.length; ) off += fs.writeSync(fd, data, off, data.length - off);
          fs.fchownSync(fd, uid, gid);
          fs.fchmodSync(fd, it.mode); // after chown: chown clears setuid/setgid
          fs.futimesSync(fd, seconds(it.mtimeNs), seconds(it.mtimeNs));
        } catch (e) {
          fs.closeSync(fd);
          throw e;
        }
        res.bytes += data.length;
        return { fd, tmp, local, p, started };
      }
      // Large files: created private and exclusive, then streamed from the pack.
      await (await fsp.open(tmp, CREATE_FLAGS, 0o600)).close();
      const written = await blobs.writeTo(it.oid!, tmp);
      if (written !== it.size) throw new Error(`${it.hostPath}: the snapshot's content is ${written} bytes, its metadata says ${it.size}`);
      const fh = await fsp.open(tmp, fs.constants.O_WRONLY | fs.constants.O_NOFOLLOW);
      try {
        await fh.chown(uid, gid);
        await fh.chmod(it.mode);
        await fh.utimes(seconds(it.mtimeNs), seconds(it.mtimeNs));
        await fh.sync();
      } finally {
        await fh.close();
      }
      res.bytes += written;
      fs.renameSync(tmp, local);
      done(p, started);
      return undefined;
    } catch (e) {
      fs.rmSync(tmp, { force: true });
      throw e;
    }
  };
  const batchSize = Math.max(1, opts.batch ?? 256);
  try {
    for (const p of plan.items) {
      if (p.item.type === 'dir') continue;
      const pending = await restoreOne(p);
      if (pending) batch.push(pending);
      if (batch.length >= batchSize) await flush();
    }
    await flush();
    await settling;
  } finally {
    // After a failure: no temporary file is left behind.
    await settling.catch(() => undefined);
    for (const x of batch) {
      fs.closeSync(x.fd);
      fs.rmSync(x.tmp, { force: true });
    }
  }

  // --delete: whatever the snapshot does not have is moved under replaced/.
  for (const d of plan.deletes) {
    await keep(d.hostPath, true);
    res.deleted++;
    log.debug(`deleted ${d.hostPath}`);
  }
  res.phases.restore = Date.now() - t0;

  // Pass 3: directory metadata, deepest first.
  const t1 = Date.now();
  const dirs = plan.items.filter((p) => p.item.type === 'dir');
  dirs.sort((a, b) => b.item.path.split('/').length - a.item.path.split('/').length);
  for (const p of dirs) {
    const it = p.item;
    const local = hostPath(it.hostPath, root);
    const { uid, gid } = ownerOf(it);
    await fsp.chown(local, uid, gid);
    await fsp.chmod(local, it.mode);
    await fsp.utimes(local, seconds(it.mtimeNs), seconds(it.mtimeNs));
    if (p.action === 'unchanged') {
      res.unchanged++;
      if (p.changes.length) res.metadataFixed++;
    }
  }
  res.phases.metadata = Date.now() - t1;
  return res;
}
