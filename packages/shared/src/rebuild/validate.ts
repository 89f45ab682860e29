import fs from 'node:fs';
import path from 'node:path';
import { PachaError, UsageError } from '../errors.ts';
import { hostPath } from '../paths.ts';
import type { MetadataEntry } from '../format/entry.ts';
import { pathComparator } from '../format/snapshot.ts';
import { isWithin, normaliseHostPath } from '../watchlist.ts';
import type { StagedSnapshot } from './read.ts';
import type { BlobSource } from './blob-source.ts';
import { escapeTerminal } from '../terminal.ts';
import { parseXattrs } from '../xattr/encode.ts';

// Everything is checked before anything is written: a damaged or hostile repository, or a
// target host whose existing symlinks would redirect a write, is refused with every problem
// named (path and reason), and the rebuild stops with the target untouched.

export interface RestoreItem extends MetadataEntry {
  /** Host path with the leading slash. */
  hostPath: string;
  /** Blob id of files and symlinks. */
  oid?: string;
}

export interface ValidatedSnapshot {
  snap: StagedSnapshot;
  /** Entries to restore (within --only), sorted by path bytes: parents before children. */
  items: RestoreItem[];
  /** The host paths the restore covers: the roots, or the --only path. */
  scope: string[];
  /** Host paths left alone even inside the scope (pacha's state dir, the staging dir). */
  exclude: string[];
}

const MAX_LISTED = 20;

/** Why a path from the repository cannot be used as a host path, or null when it can. */
export function badPathReason(p: string): string | null {
  if (p.length === 0) return 'empty path';
  if (p.includes('\0')) return 'contains a NUL byte';
  if (p.startsWith('/')) return 'absolute path (metadata paths have no leading slash)';
  // Component by component without splitting: every path of a snapshot comes here, twice.
  for (let start = 0; start <= p.length; ) {
    let end = p.indexOf('/', start);
    if (end < 0) end = p.length;
    if (end === start) return 'empty path component';
    if (p.charCodeAt(start) === 46 && (end - start === 1 || (end - start === 2 && p.charCodeAt(start + 1) === 46))) return `"${p.slice(start, end)}" component`;
    start = end + 1;
  }
  return null;
}

function badRootReason(r: string): string | null {
  if (!r.startsWith('/')) return 'not an absolute path';
  if (r.includes('\0')) return 'contains a NUL byte';
  if (r.split('/').some((c) => c === '.' || c === '..')) return 'contains a "." or ".." component';
  if (path.posix.normalize(r) !== r || (r.length > 1 && r.endsWith('/'))) return 'not a normalised path';
  return null;
}

function fail(problems: string[], what: string): never {
  // One line per problem: the names in it come from the repository, escaped for the terminal.
  const shown = problems.slice(0, MAX_LISTED).map((p) => `  ${escapeTerminal(p)}`).join('\n');
  const more = problems.length > MAX_LISTED ? `\n  ... and ${problems.length - MAX_LISTED} more` : '';
  throw new PachaError(`${what}; nothing was written:\n${shown}${more}`);
}

export interface ValidateOptions {
  root: string;
  /** --only: a host path inside the roots. */
  only?: string;
  /** The staged repository's objects. */
  blobs: BlobSource;
  /** Host paths never written (pacha's own state dir): their entries are left out. */
  exclude?: string[];
}

export async function validateSnapshot(snap: StagedSnapshot, opts: ValidateOptions): Promise<ValidatedSnapshot> {
  const problems: string[] = [];
  const where = `commit ${snap.commit.slice(0, 12)}`;

  for (const r of snap.roots) {
    const why = badRootReason(r);
    if (why) problems.push(`.pacha/roots: "${r}": ${why}`);
  }
  if (snap.roots.length === 0) problems.push('.pacha/roots is empty: the snapshot names no watched path');
  if (problems.length) fail(problems, `the snapshot's roots are unusable (${where})`);
  const inRoots = (hp: string) => snap.roots.some((r) => isWithin(hp, r));
  const aboveRoot = (hp: string) => snap.roots.some((r) => r !== hp && isWithin(r, hp));

  // 1. metadata paths
  const byPath = new Map<string, MetadataEntry>();
  for (const e of snap.entries) {
    const why = badPathReason(e.path);
    if (why) {
      problems.push(`.pacha/metadata: "${e.path}": ${why}`);
      continue;
    }
    const hp = '/' + e.path;
    if (!inRoots(hp)) problems.push(`${hp}: outside the snapshot's roots (${snap.roots.join(', ')})`);
    if (byPath.has(e.path)) problems.push(`${hp}: listed twice in .pacha/metadata`);
    if (e.type === 'symlink' && (!e.target || e.target.includes('\0'))) problems.push(`${hp}: symlink with an empty target or a NUL byte`);
    if (e.xattrs !== undefined) {
      try {
        parseXattrs(e.xattrs);
      } catch (err) {
        problems.push(`${hp}: ${(err as Error).message}`);
      }
    }
    byPath.set(e.path, e);
  }
  if (problems.length) fail(problems, `the snapshot holds paths it must not write (${where})`);

  // 2. --only: what will be written (the blobs of all of it are read below)
  let scope = snap.roots;
  if (opts.only !== undefined) {
    const only = normaliseHostPath(opts.only, '/');
    if (!snap.roots.some((r) => isWithin(only, r) || isWithin(r, only))) {
      throw new UsageError(`--only ${opts.only}: not inside the snapshot's roots (accepted: a path under ${snap.roots.join(', ')})`);
    }
    scope = snap.roots.filter((r) => isWithin(r, only));
    if (scope.length === 0) scope = [only];
  }
  const inScope = (hp: string) => scope.some((s) => isWithin(hp, s)) && !opts.exclude?.some((x) => isWithin(hp, x));

  // 3. metadata against the tree, and every blob that will be written present, readable (its
  // id checked as it is read), a blob, and of the size the metadata says
  const toCheck: { e: MetadataEntry; oid: string }[] = [];
  for (const e of byPath.values()) {
    const hp = '/' + e.path;
    const t = snap.tree.get(e.path);
    if (e.type === 'file') {
      if (!t || t.kind !== 'blob' || (t.mode !== '100644' && t.mode !== '100755')) problems.push(`${hp}: metadata says file, the tree has ${t ? `${t.kind} ${t.mode}` : 'nothing'}`);
      else if (!opts.blobs.has(t.oid)) problems.push(`${hp}: its content (blob ${t.oid}) is missing from the repository`);
      else if (inScope(hp)) toCheck.push({ e, oid: t.oid });
    } else if (e.type === 'symlink') {
      if (!t || t.kind !== 'blob' || t.mode !== '120000') problems.push(`${hp}: metadata says symlink, the tree has ${t ? `${t.kind} ${t.mode}` : 'nothing'}`);
      else if (!opts.blobs.has(t.oid)) problems.push(`${hp}: its target (blob ${t.oid}) is missing from the repository`);
      else toCheck.push({ e, oid: t.oid });
    } else if (t && t.kind !== 'tree') problems.push(`${hp}: metadata says directory, the tree has ${t.kind} ${t.mode}`);
  }
  for (const t of snap.tree.values()) {
    const hp = '/' + t.path;
    const why = badPathReason(t.path);
    if (why) problems.push(`tree entry "${t.path}": ${why}`);
    else if (t.kind === 'commit') problems.push(`${hp}: a git submodule entry, which pacha never writes`);
    else if (inRoots(hp)) {
      if (!byPath.has(t.path)) problems.push(`${hp}: in the tree but not in .pacha/metadata`);
    } else if (!(t.kind === 'tree' && aboveRoot(hp))) problems.push(`${hp}: outside the snapshot's roots (${snap.roots.join(', ')})`);
  }
  // Parents inside the roots must be directories of the snapshot: a path under a symlink (or a
  // file) the restore creates would be written through it.
  for (const e of byPath.values()) {
    // A parent that is a directory of the snapshot has its own ancestors checked as an entry itself.
    const cut = e.path.lastIndexOf('/');
    if (cut > 0 && byPath.get(e.path.slice(0, cut))?.type === 'dir') continue;
    // Else each ancestor, shortest first, as a prefix of the path (no array per entry).
    for (let j = e.path.indexOf('/'); j > 0; j = e.path.indexOf('/', j + 1)) {
      const anc = e.path.slice(0, j);
      const a = byPath.get(anc);
      if (a && a.type !== 'dir') problems.push(`/${e.path}: its parent /${anc} is a ${a.type} in the snapshot: writing it would pass through that ${a.type}`);
      else if (!a && inRoots('/' + anc) && !snap.roots.includes('/' + anc)) problems.push(`/${e.path}: its parent directory /${anc} has no metadata line`);
    }
  }
  const files = toCheck.filter(({ e }) => e.type === 'file');
  const why = await opts.blobs.checkBlobs(files.map(({ e, oid }) => ({ oid, size: e.size })));
  for (let k = 0; k < files.length; k++) if (why[k]) problems.push(`/${files[k].e.path}: ${why[k]}`);
  for (const { e, oid } of toCheck) {
    if (e.type === 'file') continue;
    // Symlink blobs are small: check they say what the metadata says.
    let target: string;
    try {
      target = opts.blobs.readAny(oid).toString();
    } catch (err) {
      problems.push(`/${e.path}: its target (blob ${oid}) cannot be read: ${(err as Error).message}`);
      continue;
    }
    if (target !== e.target) problems.push(`/${e.path}: metadata target "${e.target}" differs from the stored target "${target}"`);
  }
  if (problems.length) fail(problems, `the repository is damaged or inconsistent (${where})`);

  const items: RestoreItem[] = [];
  for (const e of byPath.values()) {
    const hp = '/' + e.path;
    if (!inScope(hp)) continue;
    const t = snap.tree.get(e.path);
    items.push({ ...e, hostPath: hp, oid: e.type === 'dir' ? undefined : t!.oid });
  }
  // Byte order (parents first); a plain string compare where that is the same (no allocation per compare).
  const cmp = pathComparator(items.map((i) => i.path));
  items.sort((a, b) => cmp(a.path, b.path));
  if (opts.only !== undefined && items.length === 0) throw new UsageError(`--only ${opts.only}: the snapshot holds nothing there`);

  // 4. the target host: no existing symlink on the way to any path we write.
  checkTargetAncestors(items, opts.root);
  return { snap, items, scope, exclude: opts.exclude ?? [] };
}

/**
 * Every existing ancestor of every target path, from the root dir down, must be a real
 * directory (lstat, never stat); a directory of the snapshot must not be a symlink on the host.
 */
export function checkTargetAncestors(items: RestoreItem[], root: string): void {
  const problems: string[] = [];
  const seen = new Map<string, fs.Stats | null>();
  const lst = (hp: string): fs.Stats | null => {
    if (seen.has(hp)) return seen.get(hp)!;
    let st: fs.Stats | null = null;
    try {
      st = fs.lstatSync(hostPath(hp, root));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT' && (e as NodeJS.ErrnoException).code !== 'ENOTDIR') throw e;
    }
    seen.set(hp, st);
    return st;
  };
  const reported = new Set<string>();
  const dirs = new Set(items.filter((i) => i.type === 'dir').map((i) => i.hostPath));
  // Paths whose whole way down from the root dir passed: a directory there (true), or nothing
  // (false: nothing below it exists either). Below one, only what is deeper needs checking.
  // Items come parents first.
  const passed = new Map<string, boolean>();
  for (const it of items) {
    const hp = it.hostPath;
    const cut = hp.lastIndexOf('/');
    const parent = cut > 0 ? hp.slice(0, cut) : '';
    const above = parent === '' ? undefined : passed.get(parent);
    if (above === false) {
      if (it.type === 'dir') passed.set(hp, false);
      continue;
    }
    // Each ancestor as a prefix of the path (where it ends), and a directory itself.
    const ends: number[] = [];
    if (above === undefined) for (let j = hp.indexOf('/', 1); j > 0; j = hp.indexOf('/', j + 1)) ends.push(j);
    if (it.type === 'dir') ends.push(hp.length);
    let ok = true;
    let there = true;
    for (const end of ends) {
      const anc = hp.slice(0, end);
      const st = lst(anc);
      if (st === null) {
        there = false;
        break; // nothing further down exists either
      }
      ok = false;
      if (st.isSymbolicLink()) {
        if (!reported.has(anc)) {
          let target = '';
          try {
            target = fs.readlinkSync(hostPath(anc, root));
          } catch {
            target = '?';
          }
          problems.push(`${anc} is a symlink on this host (-> ${target}): writing ${it.hostPath} would pass through it`);
          reported.add(anc);
        }
        break;
      }
      if (!st.isDirectory() && !dirs.has(anc)) {
        if (!reported.has(anc)) problems.push(`${anc} is not a directory on this host: ${it.hostPath} cannot be written below it`);
        reported.add(anc);
        break;
      }
      ok = true;
    }
    if (ok) {
      // A missing ancestor above the parent leaves the parent missing too.
      if (parent !== '' && above === undefined) passed.set(parent, there || lst(parent) !== null);
      if (it.type === 'dir') passed.set(hp, there);
    }
  }
  if (problems.length) fail(problems, 'the target host has paths in the way of the restore (remove or move them, then run again)');
}
