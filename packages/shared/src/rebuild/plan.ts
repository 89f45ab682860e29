import fs from 'node:fs';
import path from 'node:path';
import { FileChangedError, hashFile } from '../git/pack-writer.ts';
import { hostPath } from '../paths.ts';
import { comparePaths, formatMode } from '../format/entry.ts';
import { isWithin } from '../watchlist.ts';
import type { OwnerResolver } from './owners.ts';
import type { RestoreItem, ValidatedSnapshot } from './validate.ts';
import { loadOwners } from '../snapshot/owners.ts';
import { xattrFieldChanges } from '../xattr/encode.ts';
import type { XattrRestorer } from '../xattr/xattr.ts';

// What the rebuild would change on this host: each snapshot entry is created, replaced
// (content, type or symlink target differs) or left (same content), plus the metadata
// fixes (chmod, chown, mtime) of entries that stay, and with --delete the paths under the
// roots that the snapshot does not have. The same plan drives --dry-run and the restore.

export type ItemAction = 'create' | 'replace' | 'unchanged';

export interface Existing {
  type: 'file' | 'dir' | 'symlink' | 'other';
  /** Device and inode: the restore acts on this very file or refuses the path (target-tree.ts). */
  dev: bigint;
  ino: bigint;
  nlink: number;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  mtimeNs: bigint;
  target?: string;
}

export interface PlannedItem {
  item: RestoreItem;
  action: ItemAction;
  existing?: Existing;
  /** Readable differences: "content", "type dir -> file", "chmod 0644 -> 0600", "chown ...", "retarget a -> b". */
  changes: string[];
}

export interface PlannedDelete {
  hostPath: string;
  type: Existing['type'];
  /** What the plan saw there: the restore moves exactly that, or refuses the path. */
  existing: Existing;
}

export interface Plan {
  items: PlannedItem[];
  deletes: PlannedDelete[];
  counts: { create: number; replace: number; unchanged: number; delete: number; metadata: number };
  /** Bytes of file content to write. */
  bytes: number;
}

/**
 * Does a local file hold the blob `oid`? Hashed by the snapshot's own hashFile (read again when
 * it changes while read); one that keeps changing holds nothing we can vouch for.
 */
export function holdsBlob(file: string, oid: string | undefined): boolean {
  if (oid === undefined) return false;
  try {
    return hashFile(file).oid === oid;
  } catch (e) {
    if (e instanceof FileChangedError) return false;
    throw e;
  }
}

export function lstatExisting(local: string): Existing | undefined {
  let st: fs.BigIntStats;
  try {
    st = fs.lstatSync(local, { bigint: true });
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
    throw e;
  }
  const type = st.isFile() ? 'file' : st.isDirectory() ? 'dir' : st.isSymbolicLink() ? 'symlink' : 'other';
  return {
    type,
    dev: st.dev,
    ino: st.ino,
    nlink: Number(st.nlink),
    mode: Number(st.mode & 0o7777n),
    uid: Number(st.uid),
    gid: Number(st.gid),
    size: Number(st.size),
    mtimeNs: st.mtimeNs,
    target: type === 'symlink' ? fs.readlinkSync(local) : undefined,
  };
}

function owner(name: string, id: number): string {
  return name ? `${name}(${id})` : String(id);
}

export interface PlanOptions {
  root: string;
  resolver: OwnerResolver;
  /** Compares each kept path's extended attributes with the snapshot's. */
  xattrs?: XattrRestorer;
  /** --delete: also remove what the host has under the roots and the snapshot does not. */
  deleteExtra: boolean;
}

export async function planRestore(v: ValidatedSnapshot, opts: PlanOptions): Promise<Plan> {
  const items: PlannedItem[] = [];
  const counts = { create: 0, replace: 0, unchanged: 0, delete: 0, metadata: 0 };
  let bytes = 0;
  // Items come parents first: below a directory the host lacks, nothing exists (no lstat needed
  // for most paths of a rebuild onto a fresh machine).
  const missing = new Set<string>();
  const liveNames = opts.xattrs ? loadOwners(opts.root) : undefined;
  for (const it of v.items) {
    const local = hostPath(it.hostPath, opts.root);
    const parentMissing = missing.has(path.posix.dirname(it.hostPath));
    const ex = parentMissing ? undefined : lstatExisting(local);
    if (!ex && it.type === 'dir') missing.add(it.hostPath);
    const changes: string[] = [];
    let action: ItemAction;
    if (!ex) action = 'create';
    else if (ex.type !== it.type) {
      action = 'replace';
      changes.push(`type ${ex.type} -> ${it.type}`);
    } else if (it.type === 'file') {
      const same = ex.size === it.size && holdsBlob(local, it.oid);
      action = same ? 'unchanged' : 'replace';
      if (!same) changes.push(`content (${ex.size} -> ${it.size} bytes)`);
    } else if (it.type === 'symlink') {
      action = ex.target === it.target ? 'unchanged' : 'replace';
      if (action === 'replace') changes.push(`retarget ${ex.target} -> ${it.target}`);
    } else action = 'unchanged';
    if (ex && action === 'unchanged') {
      const uid = opts.resolver.uid(it.user, it.uid, it.hostPath);
      const gid = opts.resolver.gid(it.group, it.gid, it.hostPath);
      if (it.type !== 'symlink' && ex.mode !== it.mode) changes.push(`chmod ${formatMode(ex.mode)} -> ${formatMode(it.mode)}`);
      if (ex.uid !== uid || ex.gid !== gid) changes.push(`chown ${ex.uid}:${ex.gid} -> ${owner(it.user, uid)}:${owner(it.group, gid)}`);
      if (it.type !== 'dir' && ex.mtimeNs / 1000n !== it.mtimeNs / 1000n) changes.push('mtime');
      const xd = opts.xattrs?.differences(local, it.xattrs, it.hostPath, liveNames!);
      if (xd) changes.push(`xattrs ${xd}`);
      // A file with other names elsewhere (a hard link) gets no chown or chmod: that would change
      // the other names' file too. It is replaced by a copy of its own instead.
      if (changes.length && it.type === 'file' && ex.nlink > 1) {
        action = 'replace';
        changes.unshift(`hard link (${ex.nlink} names): replaced by its own copy`);
      } else if (changes.length) counts.metadata++;
    }
    counts[action]++;
    if (action !== 'unchanged' && it.type === 'file') bytes += it.size;
    items.push({ item: it, action, existing: ex, changes });
  }
  const deletes = opts.deleteExtra ? findExtra(v, opts.root) : [];
  counts.delete = deletes.length;
  return { items, deletes, counts, bytes };
}

/** Paths under the scope that the snapshot lacks; a directory is listed once, not its contents. */
function findExtra(v: ValidatedSnapshot, root: string): PlannedDelete[] {
  const byPath = new Map(v.items.map((i) => [i.hostPath, i]));
  const keep = new Set(byPath.keys());
  const out: PlannedDelete[] = [];
  const walk = (hp: string) => {
    if (v.exclude.some((x) => isWithin(hp, x))) return;
    const ex = lstatExisting(hostPath(hp, root));
    if (!ex) return;
    if (!keep.has(hp)) {
      out.push({ hostPath: hp, type: ex.type, existing: ex });
      return;
    }
    if (ex.type !== 'dir') return;
    if (byPath.get(hp)?.type !== 'dir') return;
    for (const name of fs.readdirSync(hostPath(hp, root)).sort(comparePaths)) walk(path.posix.join(hp, name));
  };
  for (const s of v.scope) {
    // A scope path the snapshot does not hold at all (e.g. an unwatched --only) is left alone.
    if (keep.has(s)) walk(s);
  }
  return out.filter((d) => v.scope.some((s) => isWithin(d.hostPath, s)));
}

/** One line per difference, for --dry-run (and -v). */
export function describePlan(plan: Plan): string[] {
  const lines: string[] = [];
  for (const p of plan.items) {
    const it = p.item;
    const what = it.type === 'symlink' ? `symlink -> ${it.target}` : it.type === 'file' ? `file ${it.size} bytes` : 'dir';
    const meta = `${formatMode(it.mode)} ${owner(it.user, it.uid)}:${owner(it.group, it.gid)}${it.xattrs ? `, xattrs ${xattrFieldChanges('', it.xattrs)}` : ''}`;
    if (p.action === 'create') lines.push(`create   ${it.hostPath} (${what}, ${meta})`);
    else if (p.action === 'replace') lines.push(`replace  ${it.hostPath} (${p.changes.join(', ')}; ${meta})`);
    else for (const c of p.changes) lines.push(`${c.split(' ')[0].padEnd(8)} ${it.hostPath} (${c})`);
  }
  for (const d of plan.deletes) lines.push(`delete   ${d.hostPath} (${d.type}; kept under replaced/)`);
  return lines;
}
