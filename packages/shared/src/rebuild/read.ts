import fs from 'node:fs';
import path from 'node:path';
import { PachaError } from '../errors.ts';
import type { CommitInfo } from '../git/commit.ts';
import type { Repository } from '../git/repository.ts';
import { escapeTerminal } from '../terminal.ts';
import type { MetadataEntry } from '../format/entry.ts';
import { FormatError, UnsupportedFormatError } from '../format/entry.ts';
import { readSnapshotTree, type SnapshotItem } from '../format/snapshot.ts';

// Reading the snapshot to rebuild from the staged copy of the master's repository: the ref,
// the commit, every tree and the .pacha files, through the one reader, Repository (positioned reads of single
// objects, so a pack holding a huge file is never loaded whole). Every failure names the object
// or ref and says the repository is damaged, so the rebuild stops before anything is written.

export type TreeItem = SnapshotItem;

export interface StagedSnapshot {
  repoDir: string;
  commit: string;
  /** Commit time, ms since the epoch. */
  timeMs: number;
  message: string;
  roots: string[];
  entries: MetadataEntry[];
  /** Every path of the commit's tree outside .pacha/, by real path. */
  tree: Map<string, TreeItem>;
  /** Snapshot format version: format 1 recorded no extended attributes. */
  version: number;
}

function damaged(what: string, err: unknown): PachaError {
  const reason = err instanceof Error ? err.message : String(err);
  return new PachaError(`the repository is damaged: ${what}: ${reason}`, {
    hint: 'nothing was written; check the host folder on the master (pacha-master verify HOST)',
  });
}

/** The commit refs/heads/main (through HEAD) points to. */
export function resolveHead(repoDir: string, objects: Repository): string {
  if (!fs.existsSync(path.join(repoDir, 'HEAD'))) throw new PachaError(`the repository is damaged: ${repoDir} has no HEAD`);
  let oid: string | null;
  try {
    oid = objects.readRef('HEAD');
  } catch (e) {
    throw damaged('HEAD does not lead to a commit id', e);
  }
  if (oid === null) {
    throw new PachaError('the repository has no snapshot: HEAD does not lead to a commit (no refs/heads/main)', {
      hint: 'has this host ever pushed? (pacha-master log HOST)',
    });
  }
  try {
    objects.readCommit(oid);
  } catch (e) {
    throw damaged(`refs/heads/main points to ${oid}, which is not a commit in the repository`, e);
  }
  return oid;
}

/** Read the commit: roots, metadata (either format) and the full tree (trees are read, file contents are not). */
export function readStagedSnapshot(repoDir: string, objects: Repository, commit: string): StagedSnapshot {
  let c: CommitInfo;
  try {
    c = objects.readCommit(commit);
  } catch (e) {
    throw damaged(`cannot read commit ${commit}`, e);
  }
  const source = {
    readTree: (oid: string) => {
      try {
        return objects.readTree(oid);
      } catch (e) {
        throw damaged(`cannot read the tree ${oid}`, e);
      }
    },
    readBlob: (oid: string) => {
      try {
        const o = objects.read(oid);
        if (o.type !== 'blob') throw new Error(`it is a ${o.type}, not a blob`);
        return o.content;
      } catch (e) {
        throw damaged(`cannot read the blob ${oid}`, e);
      }
    },
  };
  try {
    const snap = readSnapshotTree(source, c.tree);
    const entries: MetadataEntry[] = snap.entries;
    return { repoDir, commit, timeMs: c.time * 1000, message: c.message, roots: snap.roots, entries, tree: snap.tree, version: snap.version };
  } catch (e) {
    if (!(e instanceof FormatError)) throw e;
    // The message may quote names from the repository: escaped for the terminal.
    throw new PachaError(`the repository is damaged: commit ${commit}: ${escapeTerminal(e.message)}`, {
      hint: e instanceof UnsupportedFormatError ? 'install the pacha version that wrote this snapshot (or a newer one)' : undefined,
    });
  }
}
