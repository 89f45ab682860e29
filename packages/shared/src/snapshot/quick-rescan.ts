import fs from 'node:fs';
import { type AddObject, buildTopTree } from './tree-builder.ts';
import { comparePaths, encodeEntry, gitMode, gitName } from './format.ts';
import type { RepoObjects } from '../git/object-store.ts';
import { patchTree } from '../git/objects.ts';
import { treePath } from '../paths.ts';
import type { Owners } from './owners.ts';
import { entryOf, type HashJob, isRacy, sigOf } from './scan.ts';
import {
  modeOfLine,
  type Node,
  type RecordUpdate,
  type Records,
  recordLine,
  recordMatches,
  recordOid,
  recordPath,
  recordsOf,
  recordType,
  SIG_VALID,
  type StatCacheFile,
  TYPE_DIR,
  TYPE_FILE,
  TYPE_MASK,
} from './stat-cache.ts';
import { CLAIMED, DIFFERS, localPrefix, MATCH, UNSEEN } from './stat-verify.ts';

// The quick re-scan: a full scan's fast path for its common case, where no directory changed
// (so no name was added, removed or renamed) and what changed, if anything, is the content or
// metadata of some files. It works on the stat cache's records as they lie in the file, and
// makes no object per path: the full scan's 100,000 nodes and their maps cost more than the
// lstat calls themselves. Whatever else it meets (a directory or symlink that changed, a file
// gone or no longer a file, a root that appeared) it hands back to the full scan, which
// reuses the verdicts reached so far.
//
// A changed file's directory trees are patched: the previous tree object with that entry's id
// and mode replaced, up to the root. Only an unchanged set of names makes that safe, which is
// what "no directory changed" guarantees (a directory's mtime moves with every name it gains
// or loses, and a directory holding names the snapshot skips is never "unchanged", see scan.ts).

export interface QuickScanInput {
  file: StatCacheFile;
  /** The watched host paths. */
  roots: string[];
  /** config.root (PACHA_ROOT_DIR). */
  root: string;
  maxFileSize: number;
  owners: Owners;
  racyNs: bigint;
  /** A stat-verify worker's verdicts on `file`'s records. */
  verified?: Uint8Array;
}

export interface QuickJob extends HashJob {
  /** The record this file had. */
  index: number;
}

export interface QuickScan {
  rec: Records;
  /** Files whose lstat differs from their record (or whose record could not say): read again. */
  jobs: QuickJob[];
  warnings: string[];
}

/** The check of every record; null when the full scan must run. */
export function quickScan(input: QuickScanInput): QuickScan | null {
  const rec = recordsOf(input.file);
  const prefix = localPrefix(input.root);
  const warnings: string[] = [];
  for (const r of input.roots) {
    if (r === '/') {
      warnings.push('watching / as a whole is not supported: watch its directories instead');
      continue;
    }
    // A root without a record appeared (or was missing and still is): the full scan says which.
    if (findRecord(rec, treePath(r)) < 0) return null;
  }
  const { verified } = input;
  const jobs: QuickJob[] = [];
  for (let i = 0; i < rec.count; i++) {
    const f = rec.flags[i];
    const type = f & TYPE_MASK;
    if ((f & SIG_VALID) !== 0) {
      const v = verified === undefined ? UNSEEN : Atomics.compareExchange(verified, i, UNSEEN, CLAIMED);
      if (v === MATCH) continue;
      if (v !== DIFFERS) {
        const st = lstatQuiet(prefix + recordPath(rec, i));
        const same = st !== undefined && sameKind(type, st, input.maxFileSize) && recordMatches(rec, i, st);
        // Kept for the full scan, should it have to run after all.
        if (verified !== undefined) verified[i] = same ? MATCH : DIFFERS;
        if (same) continue;
      }
    }
    // Changed, or stored racily clean (no signature): only a file's content can be read again.
    if (type !== TYPE_FILE) return null;
    const rel = recordPath(rec, i);
    const local = prefix + rel;
    let st: fs.BigIntStats | undefined;
    try {
      st = fs.lstatSync(local, { bigint: true, throwIfNoEntry: false });
    } catch {
      return null;
    }
    if (st === undefined || !st.isFile() || Number(st.size) > input.maxFileSize) return null;
    const entry = entryOf(rel, 'file', st, input.owners);
    const node: Node = { path: rel, type: 'file', line: encodeEntry(entry), sig: isRacy(st, input.racyNs) ? '' : sigOf(st), oid: '' };
    jobs.push({ index: i, node, local, entry });
  }
  return { rec, jobs, warnings };
}

function lstatQuiet(p: string): fs.Stats | undefined {
  try {
    return fs.lstatSync(p, { throwIfNoEntry: false });
  } catch {
    return undefined;
  }
}

function sameKind(type: number, st: fs.Stats, maxFileSize: number): boolean {
  if (type === TYPE_FILE) return st.isFile() && st.size <= maxFileSize;
  if (type === TYPE_DIR) return st.isDirectory();
  return st.isSymbolicLink();
}

/** The record of a path (records are in .pacha/metadata order: path bytes); -1 when none. */
export function findRecord(rec: Records, path: string): number {
  let lo = 0;
  let hi = rec.count;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    const c = comparePaths(recordPath(rec, mid), path);
    if (c === 0) return mid;
    if (c < 0) lo = mid + 1;
    else hi = mid;
  }
  return -1;
}

export interface QuickOutcome {
  updates: Map<number, RecordUpdate>;
  changed: number;
  metadataOnly: number;
  /** Lines that changed, by record (ascending): for the new .pacha/metadata. */
  lines: { index: number; line: string }[];
  /** Records whose git tree entry changed (content or x bit): their trees must be patched. */
  treeChanged: QuickJob[];
}

/** Compare the read files with their records. */
export function quickCompare(rec: Records, jobs: QuickJob[]): QuickOutcome {
  const out: QuickOutcome = { updates: new Map(), changed: 0, metadataOnly: 0, lines: [], treeChanged: [] };
  for (const job of jobs) {
    const i = job.index;
    const { line, oid, sig } = job.node;
    const oldLine = recordLine(rec, i);
    const oldOid = recordOid(rec, i);
    const u: RecordUpdate = { sig };
    if (line !== oldLine) {
      u.line = line;
      out.lines.push({ index: i, line });
    }
    if (oid !== oldOid) u.oid = oid;
    out.updates.set(i, u);
    if (oid !== oldOid) out.changed++;
    else if (line !== oldLine) out.metadataOnly++;
    const modeBefore = gitMode({ type: 'file', mode: modeOfLine(oldLine) });
    if (oid !== oldOid || modeBefore !== gitMode({ type: 'file', mode: job.entry.mode })) out.treeChanged.push(job);
  }
  out.lines.sort((a, b) => a.index - b.index);
  return out;
}

/**
 * The new root tree, patching the previous trees of the directories above each changed file;
 * the directories' records get their new tree ids. null when a tree is not what the records
 * say (the full scan then builds everything).
 */
export function quickTrees(
  rec: Records,
  outcome: QuickOutcome,
  rootRels: string[],
  pacha: { roots: Buffer; metadataId: string },
  objects: RepoObjects,
  add: AddObject,
): string | null {
  const rootSet = new Set(rootRels);
  // New entries per directory (by git name; a file's mode, a directory's stays), and new ids
  // of the roots themselves.
  const pending = new Map<string, Map<string, { oid: string; mode?: string }>>();
  const rootIds = new Map<string, string>();
  const enter = (rel: string, oid: string, mode?: string) => {
    if (rootSet.has(rel)) {
      rootIds.set(rel, oid);
      return;
    }
    const slash = rel.lastIndexOf('/');
    if (slash < 0) throw new Error(`internal: /${rel} is not under a watched path`);
    const dir = rel.slice(0, slash);
    let m = pending.get(dir);
    if (!m) pending.set(dir, (m = new Map()));
    m.set(gitName(rel.slice(slash + 1)), { oid, mode });
  };
  for (const job of outcome.treeChanged) enter(job.node.path, job.node.oid, gitMode({ type: 'file', mode: job.entry.mode }));
  while (pending.size > 0) {
    // Deepest first: a directory is patched once all its changed children are known.
    let dir = '';
    let depth = -1;
    for (const d of pending.keys()) {
      const k = d.split('/').length;
      if (k > depth) [dir, depth] = [d, k];
    }
    const changes = pending.get(dir)!;
    pending.delete(dir);
    const i = findRecord(rec, dir);
    if (i < 0 || (rec.flags[i] & TYPE_MASK) !== TYPE_DIR) return null;
    const oldId = recordOid(rec, i);
    const old = oldId === '' ? undefined : objects.tryRead(oldId);
    if (old === undefined || old.type !== 'tree') return null;
    const patched = patchTree(old.content, changes);
    if (patched === null) return null;
    const id = add('tree', patched);
    outcome.updates.set(i, { ...outcome.updates.get(i), oid: id });
    enter(dir, id);
  }
  const roots: { rel: string; node: Node }[] = [];
  for (const rel of rootRels) {
    const i = findRecord(rec, rel);
    if (i < 0) continue;
    const u = outcome.updates.get(i);
    roots.push({ rel, node: { path: rel, type: recordType(rec, i), line: u?.line ?? recordLine(rec, i), sig: '', oid: rootIds.get(rel) ?? u?.oid ?? recordOid(rec, i) } });
  }
  return buildTopTree(roots, pacha, add);
}
