import fs from 'node:fs';
import { isMainThread } from 'node:worker_threads';
import { type AddObject, buildTopTree } from './tree-builder.ts';
import { encodeEntry, gitMode, gitName, lowerBoundPath } from './format.ts';
import type { RepoObjects } from '../git/object-store.ts';
import { patchTree } from '../git/objects.ts';
import { treePath } from '../paths.ts';
import type { Owners } from './owners.ts';
import { entryOf, type HashJob, ignoreMatcher, isRacy, sigOf } from './scan.ts';
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

// The quick re-scan: a full scan's fast path for its common case, where no name was added,
// removed or renamed, and what changed, if anything, is the content or metadata of some files
// (and directories). It works on the stat cache's records as they lie in the file, and makes
// no object per path: the full scan's 100,000 nodes and their maps cost more than the lstat
// calls themselves. A directory whose signature is unchanged holds the same names (its mtime
// moves with every name it gains or loses; one holding names the snapshot skips is never
// "unchanged", see scan.ts); one that changed is listed and compared with its records (a file
// renamed over another leaves the same names). Whatever else it meets (a name added or gone, a
// symlink that changed, a file no longer a file, a root that appeared) it hands back to the
// full scan, which reuses the verdicts reached so far.
//
// A changed file's directory trees are patched: the previous tree object with that entry's id
// and mode replaced, up to the root, which an unchanged set of names makes safe.

export interface QuickScanInput {
  file: StatCacheFile;
  /** The watched host paths. */
  roots: string[];
  /** config.root (PACHA_ROOT_DIR). */
  root: string;
  maxFileSize: number;
  /** pacha.ignore */
  ignore: string[];
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
  /** Directories that changed but hold the same names (a file renamed over, a chmod): their new lines. */
  dirs: { index: number; node: Node }[];
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
  const ignored = ignoreMatcher(input.ignore);
  const jobs: QuickJob[] = [];
  const dirs: { index: number; node: Node }[] = [];
  const near = new NearLstat(prefix);
  try {
    for (let i = 0; i < rec.count; i++) {
      if (!checkRecord(i)) return null;
    }
  } finally {
    near.close();
  }
  return { rec, jobs, dirs, warnings };

  /** false: the full scan must run. */
  function checkRecord(i: number): boolean {
    const f = rec.flags[i];
    const type = f & TYPE_MASK;
    if ((f & SIG_VALID) !== 0) {
      const v = verified === undefined ? UNSEEN : Atomics.compareExchange(verified, i, UNSEEN, CLAIMED);
      if (v === MATCH) return true;
      if (v !== DIFFERS) {
        const st = near.lstat(recordPath(rec, i));
        const same = st !== undefined && sameKind(type, st, input.maxFileSize) && recordMatches(rec, i, st);
        // Kept for the full scan, should it have to run after all.
        if (verified !== undefined) verified[i] = same ? MATCH : DIFFERS;
        if (same) return true;
      }
    }
    // Changed, or stored racily clean (no signature).
    if (type === TYPE_DIR) {
      const dir = changedDir(rec, i, prefix, input, ignored);
      if (dir === null) return false;
      dirs.push({ index: i, node: dir });
      return true;
    }
    // A symlink that changed is left to the full scan; a file's content is read again.
    if (type !== TYPE_FILE) return false;
    const rel = recordPath(rec, i);
    const local = prefix + rel;
    let st: fs.BigIntStats | undefined;
    try {
      st = fs.lstatSync(local, { bigint: true, throwIfNoEntry: false });
    } catch {
      return false;
    }
    if (st === undefined || !st.isFile() || Number(st.size) > input.maxFileSize) return false;
    const entry = entryOf(rel, 'file', st, input.owners);
    const node: Node = { path: rel, type: 'file', line: encodeEntry(entry), sig: isRacy(st, input.racyNs) ? '' : sigOf(st), oid: '' };
    jobs.push({ index: i, node, local, entry });
    return true;
  }
}

/**
 * A directory whose signature changed: its new node when it holds exactly the names its
 * records say (what a file renamed over another or a chmod leaves), else null.
 */
function changedDir(rec: Records, i: number, prefix: string, input: QuickScanInput, ignored: (rel: string, name: string) => boolean): Node | null {
  const rel = recordPath(rec, i);
  const local = prefix + rel;
  let st: fs.BigIntStats | undefined;
  let names: string[];
  try {
    st = fs.lstatSync(local, { bigint: true, throwIfNoEntry: false });
    if (st === undefined || !st.isDirectory()) return null;
    names = fs.readdirSync(local);
  } catch {
    return null;
  }
  const kept = names.filter((n) => !ignored(`${rel}/${n}`, n));
  const known = childNames(rec, rel);
  // A name that is not valid UTF-8 reads with U+FFFD and matches no record: the full scan skips it.
  if (kept.length !== known.size || kept.some((n) => !known.has(n))) return null;
  const line = encodeEntry(entryOf(rel, 'dir', st, input.owners));
  return { path: rel, type: 'dir', line, sig: isRacy(st, input.racyNs) ? '' : sigOf(st), oid: recordOid(rec, i) };
}

/** The names of a directory's records' direct children. */
function childNames(rec: Records, dir: string): Set<string> {
  const pre = dir + '/';
  const out = new Set<string>();
  for (let i = lowerBound(rec, pre); i < rec.count; ) {
    const p = recordPath(rec, i);
    if (!p.startsWith(pre)) break;
    const slash = p.indexOf('/', pre.length);
    if (slash < 0) {
      out.add(p.slice(pre.length));
      i++;
    } else {
      // Below a child directory: its records end where its name followed by '0' (after '/') would be.
      i = lowerBound(rec, p.slice(0, slash) + '0');
    }
  }
  return out;
}

/** The first record whose path is not before `path` (path byte order). */
function lowerBound(rec: Records, path: string): number {
  return lowerBoundPath(rec.count, (i) => recordPath(rec, i), path);
}

/**
 * lstat by host path (no leading slash), from inside the path's directory: a name looked up
 * from the current directory costs the kernel one step instead of one per component, which
 * makes the call some 20% cheaper. Records come directory by directory, so the process moves
 * into each directory once; close() moves it back. Only the main thread may change the
 * process's directory: elsewhere, and where a directory cannot be entered, the full path is used.
 */
class NearLstat {
  private readonly prefix: string;
  private readonly home: string | null;
  /** The host path of the directory the process is in (null: not known, use full paths). */
  private here: string | null = null;
  private moved = false;
  private readonly opts = { throwIfNoEntry: false } as const;

  constructor(prefix: string) {
    this.prefix = prefix;
    let home: string | null = null;
    if (isMainThread) {
      try {
        home = process.cwd();
      } catch {
        home = null; // the current directory is gone: nothing to come back to, stay on full paths
      }
    }
    this.home = home;
  }

  lstat(rel: string): fs.Stats | undefined {
    try {
      if (this.home === null) return fs.lstatSync(this.prefix + rel, this.opts);
      const slash = rel.lastIndexOf('/');
      const dir = slash < 0 ? '' : rel.slice(0, slash);
      if (dir !== this.here) {
        try {
          this.moved = true;
          process.chdir(this.prefix + dir);
          this.here = dir;
        } catch {
          this.here = null;
          return fs.lstatSync(this.prefix + rel, this.opts);
        }
      }
      return fs.lstatSync(rel.slice(slash + 1), this.opts);
    } catch {
      return undefined;
    }
  }

  close(): void {
    if (this.home !== null && this.moved) process.chdir(this.home);
  }
}

function sameKind(type: number, st: fs.Stats, maxFileSize: number): boolean {
  if (type === TYPE_FILE) return st.isFile() && st.size <= maxFileSize;
  if (type === TYPE_DIR) return st.isDirectory();
  return st.isSymbolicLink();
}

/** The record of a path (records are in .pacha/metadata order: path bytes); -1 when none. */
export function findRecord(rec: Records, path: string): number {
  const i = lowerBound(rec, path);
  return i < rec.count && recordPath(rec, i) === path ? i : -1;
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

/** Compare the read files, and the directories that changed, with their records. */
export function quickCompare(rec: Records, jobs: QuickJob[], dirs: { index: number; node: Node }[] = []): QuickOutcome {
  const out: QuickOutcome = { updates: new Map(), changed: 0, metadataOnly: 0, lines: [], treeChanged: [] };
  for (const { index: i, node } of dirs) {
    const u: RecordUpdate = { sig: node.sig };
    if (node.line !== recordLine(rec, i)) {
      u.line = node.line;
      out.lines.push({ index: i, line: node.line });
      out.metadataOnly++;
    }
    out.updates.set(i, u);
  }
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
