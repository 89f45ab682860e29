import { PachaError } from '../errors.ts';
import { firstParentChain } from '../git/history.ts';
import { Repository, readHead } from '../git/repository.ts';
import type { MetadataEntry } from '../format/entry.ts';
import { type ChangeCounts, readSnapshotTree, snapshotTrailers } from '../format/snapshot.ts';

// Reading snapshots (log, diff): commits, trees and blobs through the one object reader
// (git/repository.ts), which checks every object against its id; a file's content is streamed
// out of its pack, so a large file is never held in memory.

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

/** `repo`: read through this reader (the caller closes it); else one of its own. */
export async function readSnapshot(repoDir: string, commit: string, repo?: Repository): Promise<Snapshot> {
  const objects = repo ?? new Repository(repoDir);
  let c;
  try {
    c = objects.readCommit(commit);
  } catch (e) {
    throw new PachaError(`cannot read snapshot ${commit} in ${repoDir}: ${(e as Error).message}`);
  }
  const contents = readSnapshotTree({ readTree: (oid) => objects.readTree(oid), readBlob: (oid) => objects.readBlob(oid) }, c.tree);
  const blobOf = (p: string): string => {
    const item = contents.tree.get(p);
    if (!item || item.kind !== 'blob') throw new PachaError(`snapshot ${commit.slice(0, 12)} holds no file at /${p}`);
    return item.oid;
  };
  return {
    commit,
    parent: c.parents[0] ?? null,
    time: new Date(c.time * 1000),
    message: c.message,
    host: snapshotTrailers(c.message).host,
    version: contents.version,
    roots: contents.roots,
    entries: contents.entries,
    pachaFiles: contents.pachaFiles,
    blobId: async (p) => contents.tree.get(p)?.oid ?? null,
    readBlob: async (p) => objects.readBlob(blobOf(p)),
    writeBlobTo: async (p, localFile) => objects.writeBlobTo(blobOf(p), localFile),
  };
}

/** The snapshots on main's first-parent chain, newest first. */
export async function listSnapshots(repoDir: string, limit?: number): Promise<SnapshotInfo[]> {
  const head = readHead(repoDir);
  if (head === null) return [];
  const repo = new Repository(repoDir);
  try {
    return [...firstParentChain(repo, head, { limit })].map((c) => {
      const t = snapshotTrailers(c.message);
      return { commit: c.oid, time: new Date(c.time * 1000), message: c.message, host: t.host, summary: t.counts };
    });
  } finally {
    repo.close();
  }
}
