import fs from 'node:fs';
import path from 'node:path';
import { PachaError, UsageError } from '../errors.ts';
import type { CommitInfo, RepoObjects } from '../git/object-store.ts';
import { escapeTerminal } from '../terminal.ts';
import type { MetadataEntry } from '../format/entry.ts';
import { FormatError, UnsupportedFormatError } from '../format/entry.ts';
import { readSnapshotTree, type SnapshotItem } from '../format/snapshot.ts';

// Reading the snapshot to rebuild from the staged copy of the master's repository: the ref,
// the commit, every tree and the .pacha files, through RepoObjects (positioned reads of single
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
export function resolveHead(repoDir: string, objects: RepoObjects): string {
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

/** The history of main, newest first (first parents: pacha's history is linear). */
function history(objects: RepoObjects, head: string): { oid: string; timeMs: number }[] {
  const out: { oid: string; timeMs: number }[] = [];
  const seen = new Set<string>();
  let cur: string | undefined = head;
  while (cur && !seen.has(cur)) {
    seen.add(cur);
    let c: CommitInfo;
    try {
      c = objects.readCommit(cur);
    } catch (e) {
      throw damaged(`cannot read commit ${cur} on the history of main`, e);
    }
    out.push({ oid: cur, timeMs: c.time * 1000 });
    cur = c.parents[0];
  }
  return out;
}

/**
 * --at: a commit id (4 to 40 hex digits, on the history of main) or an ISO time (the newest
 * snapshot taken at or before it).
 */
export function resolveAt(repoDir: string, objects: RepoObjects, at: string | undefined): string {
  const head = resolveHead(repoDir, objects);
  if (at === undefined || at === '') return head;
  const commits = history(objects, head);
  if (/^[0-9a-f]{4,40}$/i.test(at)) {
    const hits = commits.filter((c) => c.oid.startsWith(at.toLowerCase()));
    if (hits.length === 1) return hits[0].oid;
    if (hits.length > 1) throw new UsageError(`--at ${at}: ambiguous, matches ${hits.map((h) => h.oid.slice(0, 12)).join(', ')} (give more digits)`);
    throw new UsageError(`--at ${at}: no snapshot with that commit id on this host's history (pacha log HOST lists them)`);
  }
  const t = Date.parse(at);
  if (Number.isNaN(t)) {
    throw new UsageError(`--at ${at}: not a commit id or a time (accepted: 4-40 hex digits, or an ISO time such as 2026-01-31T12:00:00Z)`);
  }
  const hit = commits.find((c) => c.timeMs <= t);
  if (!hit) {
    throw new UsageError(`--at ${at}: no snapshot that old (the oldest is ${new Date(commits[commits.length - 1].timeMs).toISOString()})`);
  }
  return hit.oid;
}

/** Read the commit: roots, metadata (either format) and the full tree (trees are read, file contents are not). */
export function readStagedSnapshot(repoDir: string, objects: RepoObjects, commit: string): StagedSnapshot {
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
