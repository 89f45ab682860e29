import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';
import { pipeline } from 'node:stream/promises';
import git from 'isomorphic-git';
import { PachaError, UsageError } from '../errors.ts';
import { objectHeader, TYPE_OF_PACK } from '../git/objects.ts';
import { ObjectStore } from '../git/pack-index.ts';
import { gitCache, MAIN_REF, readHead } from '../git/repo.ts';
import type { MetadataEntry } from '../format/entry.ts';
import { type ChangeCounts, readSnapshotTree, snapshotTrailers } from '../format/snapshot.ts';
import { RepoObjects } from '../git/object-store.ts';

// Reading snapshots (rebuild, log, diff): commits, trees and small blobs through isomorphic-git
// with one shared cache; file contents can be streamed straight out of a pack so that restoring
// a large file does not hold it in memory. Works on any repository with whole objects or deltas
// (deltas and loose objects are read through isomorphic-git).

export type { ChangeCounts };

export interface Snapshot {
  commit: string;
  parent: string | null;
  time: Date;
  message: string;
  host: string | null;
  /** Format version of the snapshot. */
  version: number;
  roots: string[];
  entries: MetadataEntry[];
  /** Files of the top .pacha/ directory: name -> blob id. */
  pachaFiles: Map<string, string>;
  /** Blob id of a file or symlink (real path without leading slash), null when absent. */
  blobId(p: string): Promise<string | null>;
  readBlob(p: string): Promise<Buffer>;
  /** Stream a file's content into localFile (created or truncated); returns the byte count. */
  writeBlobTo(p: string, localFile: string): Promise<number>;
}

export interface SnapshotInfo {
  commit: string;
  time: Date;
  message: string;
  host: string | null;
  /** The counts the commit carries (null for commits without them, written before they were carried as data). */
  summary: ChangeCounts | null;
}

type TreeItem = { mode: string; path: string; oid: string; type: string };

export class SnapshotReader {
  readonly repoDir: string;
  private readonly trees = new Map<string, Map<string, TreeItem>>();
  private store: ObjectStore | undefined;

  constructor(repoDir: string) {
    this.repoDir = repoDir;
  }

  async tree(oid: string): Promise<Map<string, TreeItem>> {
    let t = this.trees.get(oid);
    if (!t) {
      const r = await git.readTree({ fs, gitdir: this.repoDir, oid, cache: gitCache });
      t = new Map(r.tree.map((e) => [e.path, e as TreeItem]));
      this.trees.set(oid, t);
    }
    return t;
  }

  async readBlobOid(oid: string): Promise<Buffer> {
    const r = await git.readBlob({ fs, gitdir: this.repoDir, oid, cache: gitCache });
    return Buffer.from(r.blob);
  }

  /**
   * Stream a blob into a file (a path, or a descriptor the caller opened and keeps open: the
   * rebuild writes only through descriptors); whole objects in packs are inflated as a stream.
   */
  async writeBlob(oid: string, localFile: string | number): Promise<number> {
    this.store ??= new ObjectStore(path.join(this.repoDir, 'objects'));
    let loc = this.store.locate(oid);
    if (!loc) {
      this.store = new ObjectStore(path.join(this.repoDir, 'objects'));
      loc = this.store.locate(oid);
    }
    if (loc) {
      const offset = loc.pack.offsetAt(loc.index);
      const fd = fs.openSync(loc.pack.packFile, 'r');
      let type = 0;
      let size = 0;
      let hdr = 0;
      let end = 0;
      try {
        const b = Buffer.alloc(16);
        fs.readSync(fd, b, 0, 16, offset);
        type = (b[0] >> 4) & 7;
        size = b[0] & 15;
        let shift = 4;
        hdr = 1;
        let c = b[0];
        while (c & 0x80) {
          c = b[hdr++];
          size += (c & 0x7f) * 2 ** shift;
          shift += 7;
        }
        end = loc.pack.entryEnd(offset, fs.fstatSync(fd).size);
      } finally {
        fs.closeSync(fd);
      }
      if (TYPE_OF_PACK[type] === 'blob') {
        const hash = crypto.createHash('sha1').update(objectHeader('blob', size));
        let bytes = 0;
        await pipeline(
          fs.createReadStream(loc.pack.packFile, { start: offset + hdr, end: end - 1 }),
          zlib.createInflate(),
          async function* (src: AsyncIterable<Buffer>) {
            for await (const chunk of src) {
              hash.update(chunk);
              bytes += chunk.length;
              yield chunk;
            }
          },
          typeof localFile === 'number' ? fs.createWriteStream('', { fd: localFile, autoClose: false }) : fs.createWriteStream(localFile),
        );
        if (bytes !== size || hash.digest('hex') !== oid) throw new PachaError(`object ${oid} in ${loc.pack.packFile} is corrupt (content does not match its id)`);
        return bytes;
      }
    }
    const data = await this.readBlobOid(oid);
    fs.writeFileSync(localFile, data);
    return data.length;
  }
}

export async function readSnapshot(repoDir: string, commit: string): Promise<Snapshot> {
  const reader = new SnapshotReader(repoDir);
  let c;
  try {
    c = await git.readCommit({ fs, gitdir: repoDir, oid: commit, cache: gitCache });
  } catch (e) {
    throw new PachaError(`cannot read snapshot ${commit} in ${repoDir}: ${(e as Error).message}`);
  }
  const objects = new RepoObjects(repoDir);
  let contents;
  try {
    contents = readSnapshotTree(
      {
        readTree: (oid) => objects.readTree(oid),
        readBlob: (oid) => objects.read(oid).content,
      },
      c.commit.tree,
    );
  } finally {
    objects.close();
  }
  const blobOf = (p: string): string => {
    const item = contents.tree.get(p);
    if (!item || item.kind !== 'blob') throw new PachaError(`snapshot ${commit.slice(0, 12)} holds no file at /${p}`);
    return item.oid;
  };
  return {
    commit: c.oid,
    parent: c.commit.parent[0] ?? null,
    time: new Date(c.commit.committer.timestamp * 1000),
    message: c.commit.message,
    host: snapshotTrailers(c.commit.message).host,
    version: contents.version,
    roots: contents.roots,
    entries: contents.entries,
    pachaFiles: contents.pachaFiles,
    blobId: async (p) => contents.tree.get(p)?.oid ?? null,
    readBlob: async (p) => reader.readBlobOid(blobOf(p)),
    writeBlobTo: async (p, localFile) => reader.writeBlob(blobOf(p), localFile),
  };
}

export async function listSnapshots(repoDir: string, limit?: number): Promise<SnapshotInfo[]> {
  if ((await readHead(repoDir)) === null) return [];
  const commits = await git.log({ fs, gitdir: repoDir, ref: MAIN_REF, depth: limit, cache: gitCache });
  return commits.map((c) => {
    const t = snapshotTrailers(c.commit.message);
    return { commit: c.oid, time: new Date(c.commit.committer.timestamp * 1000), message: c.commit.message, host: t.host, summary: t.counts };
  });
}

/** A commit id (full or abbreviated) or an ISO time (the newest snapshot at or before it). */
export async function resolveAt(repoDir: string, at: string): Promise<string> {
  if (/^[0-9a-f]{4,40}$/i.test(at)) {
    try {
      const oid = await git.expandOid({ fs, gitdir: repoDir, oid: at.toLowerCase(), cache: gitCache });
      await git.readCommit({ fs, gitdir: repoDir, oid, cache: gitCache });
      return oid;
    } catch (e) {
      if (!/^\d+$/.test(at)) throw new PachaError(`no snapshot ${at} in ${repoDir}: ${(e as Error).message}`, { exitCode: 2 });
    }
  }
  const t = Date.parse(at);
  if (Number.isNaN(t)) throw new UsageError(`--at ${at}: not a snapshot (accepted: a commit id, full or abbreviated, or an ISO time such as 2026-01-31T12:00:00Z)`);
  for (const s of await listSnapshots(repoDir)) {
    if (s.time.getTime() <= t) return s.commit;
  }
  throw new PachaError(`no snapshot at or before ${new Date(t).toISOString()} in ${repoDir}`, { exitCode: 2 });
}
