import fs from 'node:fs';
import { hostPath, treePath } from '../paths.ts';
import { type EntryType, type MetadataEntry, encodeFields } from '../format/entry.ts';
import type { Owners } from './owners.ts';
import { ignoreMatcher } from './ignore.ts';
import { type Node, sameStat, sigOf, type StatCache } from './stat-cache.ts';
import { type NodeMap, NodeOverlay } from './node-map.ts';
import { formatXattrs } from '../xattr/encode.ts';
import { readXattrs, type XattrReader } from '../xattr/xattr.ts';

// Walks the roots and produces the new set of nodes. Unchanged entries (same stat signature,
// stat-cache.ts sameStat) are the cached Node objects themselves, so later stages tell
// "unchanged" by identity. Files whose content must be read are listed in `toHash`; symlink
// targets are read here. Every path costs one plain lstat; only a changed one gets a second,
// exact (bigint) lstat for its record, and a path the cache does not know only the exact one.
//
// Full scan: every root is walked; a directory whose own signature is unchanged is not listed
// again (its entries come from the cache: adding or removing a name changes the directory's
// mtime). Dirty scan (the watcher's paths): only the dirty paths and the directories leading
// to them are looked at; a dirty directory is listed again to find deletions; the rest is
// carried over from the cache.

export interface ScanInput {
  root: string;
  roots: string[];
  ignore: string[];
  maxFileSize: number;
  prev: StatCache | null;
  /** Cached listings and lines may be reused (same roots, ignore, size limit, owners). */
  trusted: boolean;
  owners: Owners;
  /** Entries changed at or after this ctime are stored with an empty signature (racy). */
  racyNs: bigint;
  dirty?: string[];
  /** Reads the extended attributes of each path whose record is made anew (absent: none recorded). */
  xattrs?: XattrReader;
  /** Told of each file to read as the scan finds it (toHash's order), so reading can start before the scan ends. */
  onRead?: (job: HashJob) => void;
}

export interface HashJob {
  node: Node;
  local: string;
  entry: MetadataEntry;
}

export interface ScanOutput {
  nodes: NodeMap;
  toHash: HashJob[];
  /** Symlink targets and other small blobs: oid -> content. */
  smallBlobs: Map<string, Buffer>;
  warnings: string[];
  /** Paths whose previous version is kept because they could not be read now. */
  kept: number;
  /** Nodes made in this scan (the rest are cached Node objects, unchanged by identity). */
  fresh: Node[];
}

type Mode = 'deep' | 'listed' | 'path';

function parentOf(rel: string): string {
  return rel.slice(0, Math.max(0, rel.lastIndexOf('/')));
}

/** The metadata entry of a path as lstat (bigint) describes it. */
export function entryOf(rel: string, type: EntryType, st: fs.BigIntStats, owners: Owners, target?: string): MetadataEntry {
  const uid = Number(st.uid);
  const gid = Number(st.gid);
  return {
    path: rel,
    type,
    mode: Number(st.mode) & 0o7777,
    uid,
    user: owners.user(uid),
    gid,
    group: owners.group(gid),
    mtimeNs: st.mtimeNs,
    size: type === 'file' ? Number(st.size) : type === 'symlink' ? Buffer.byteLength(target ?? '') : 0,
    target,
  };
}

/**
 * What goes before a host path (without its leading slash) to name it here: hostPath() without
 * its normalising, because the scan's paths are already clean and it runs once per path.
 */
export function localPrefix(root: string): string {
  return root === '/' ? '/' : hostPath('/', root).replace(/\/$/, '') + '/';
}

/** Changed at or after the snapshot's start stamp: its signature cannot be trusted later. */
export function isRacy(st: fs.BigIntStats, racyNs: bigint): boolean {
  return st.ctimeNs >= racyNs || st.mtimeNs >= racyNs;
}

export function scan(input: ScanInput, blobId: (data: Buffer) => string): ScanOutput {
  const { prev, owners } = input;
  // Untrusted cache (other roots, ignore patterns, size limit or users): walk everything once.
  const isDirty = input.dirty !== undefined && prev !== null && input.trusted;
  // With a trusted cache (so the same roots) the scan starts from the cache (an overlay over it)
  // and records what is gone; an unchanged path then costs no work beyond its lstat.
  const fromCopy = prev !== null && input.trusted;
  const out: ScanOutput = { nodes: fromCopy ? new NodeOverlay(prev.byPath) : new Map(), toHash: [], smallBlobs: new Map(), warnings: [], kept: 0, fresh: [] };
  const nodes = out.nodes;
  const warn = (m: string) => out.warnings.push(m);
  const prevMap = prev?.byPath ?? new Map<string, Node>();
  const ignored = ignoreMatcher(input.ignore);

  // Children of a directory in the cache (the cached nodes), computed once when a listing is reused.
  let childIndex: Map<string, Node[]> | undefined;
  const cachedChildNodes = (rel: string): Node[] => {
    if (!childIndex) {
      childIndex = new Map();
      let lastParent = '';
      let list: Node[] = [];
      for (const n of prev!.nodes) {
        const i = n.path.lastIndexOf('/');
        if (i < 0) continue;
        // Siblings mostly come one after another in metadata order: skip the look-up then.
        if (i !== lastParent.length || !n.path.startsWith(lastParent)) {
          lastParent = n.path.slice(0, i);
          let a = childIndex.get(lastParent);
          if (!a) childIndex.set(lastParent, (a = []));
          list = a;
        }
        list.push(n);
      }
    }
    return childIndex.get(rel) ?? [];
  };
  const cachedChildren = (rel: string): string[] => cachedChildNodes(rel).map((n) => n.path.slice(rel.length + 1));

  // Removals from the copy are applied in one pass at the end.
  const removedSelf = new Set<string>();
  const removedBelow = new Set<string>();
  const visited = new Set<string>();
  const remove = (rel: string, self: boolean) => {
    if (self) nodes.delete(rel);
    if (!fromCopy) return;
    if (self) removedSelf.add(rel);
    removedBelow.add(rel);
  };
  const keepPrevSubtree = (rel: string) => {
    if (fromCopy || !prev) return;
    const pre = rel + '/';
    for (const n of prev.nodes) if (n.path === rel || n.path.startsWith(pre)) nodes.set(n.path, n);
  };

  // A record is made anew only for a path whose stat signature changed: a setfattr, setfacl or
  // setcap changes the ctime, so unchanged records keep the attributes they had.
  const makeEntry = (rel: string, type: EntryType, st: fs.BigIntStats, target?: string) => {
    const e = entryOf(rel, type, st, owners, target);
    if (input.xattrs) {
      const x = readXattrs(input.xattrs, prefix + rel, owners, '/' + rel);
      if (x.length > 0) e.xattrs = formatXattrs(x);
    }
    return e;
  };
  const racy = (st: fs.BigIntStats) => isRacy(st, input.racyNs);

  const listDir = (local: string, rel: string): string[] | null => {
    let names: string[];
    try {
      names = fs.readdirSync(local);
    } catch (e) {
      warn(`cannot list /${rel}: ${(e as Error).message}; its previous contents are kept`);
      return null;
    }
    if (names.some((n) => n.includes('\ufffd'))) {
      // Names that are not valid UTF-8 decode to U+FFFD and cannot be stored as text: skip them.
      const raw = fs.readdirSync(local, { encoding: 'buffer' });
      const bad = new Set<string>();
      for (const b of raw) {
        const s = b.toString('utf8');
        if (!Buffer.from(s).equals(b)) {
          bad.add(s);
          warn(`skipped /${rel}/${b.toString('latin1')}: its name is not valid UTF-8`);
          unverifiable(rel);
        }
      }
      names = names.filter((n) => !bad.has(n));
    }
    return names;
  };

  const prefix = localPrefix(input.root);
  // A directory holding a name the snapshot skips (too large, not a file, directory or symlink,
  // not UTF-8) is stored without a signature, so that it is listed again every time: the cache
  // cannot say when such a name becomes one to keep (a file that shrank, a fifo made a file).
  const unverifiable = (dir: string) => {
    const n = nodes.get(dir);
    if (n !== undefined && n.type === 'dir' && n.sig !== null) put({ path: n.path, type: 'dir', line: n.line, sig: null, oid: n.oid });
  };
  /** An unchanged node: already there when the scan started from the cache. */
  const keep = (rel: string, n: Node) => {
    if (!fromCopy) nodes.set(rel, n);
  };
  const put = (n: Node) => {
    nodes.set(n.path, n);
    out.fresh.push(n);
  };
  /** admitted: the name comes from a cached listing made under the same ignore patterns. */
  /** The exact (bigint) lstat of a path that changed; undefined when it is gone meanwhile. */
  const exact = (local: string): fs.BigIntStats | undefined => fs.lstatSync(local, { bigint: true, throwIfNoEntry: false });
  const sigUnlessRacy = (st: fs.BigIntStats) => (racy(st) ? null : sigOf(st));
  /** admitted: the name comes from a cached listing made under the same ignore patterns. */
  const visit = (rel: string, mode: Mode, isRoot: boolean, admitted = false): void => {
    if (isDirty) visited.add(rel);
    const local = prefix + rel;
    const p = prevMap.get(rel);
    // A path the cache does not know gets a record made anyway: its one lstat is the exact one.
    let st: fs.Stats | fs.BigIntStats | undefined;
    let plain: fs.Stats | undefined;
    let bst: fs.BigIntStats | undefined;
    try {
      st = p === undefined ? (bst = fs.lstatSync(local, { bigint: true, throwIfNoEntry: false })) : (plain = fs.lstatSync(local, { throwIfNoEntry: false }));
    } catch (e) {
      warn(`cannot stat /${rel}: ${(e as Error).message}; its previous version is kept`);
      out.kept++;
      keepPrevSubtree(rel);
      return;
    }
    if (st === undefined) {
      if (isRoot) warn(`watched path /${rel} does not exist: its files are recorded as deleted`);
      remove(rel, true);
      return;
    }
    if (!isRoot && !admitted && ignored('/' + rel)) {
      remove(rel, true);
      return;
    }
    if (p && p.type === 'dir' && !st.isDirectory()) remove(rel, false);
    // Same signature: same content. Trusted: the cached record (names, settings) is still right too.
    const sameSig = p !== undefined && plain !== undefined && sameStat(p, plain);
    const same = sameSig && input.trusted;
    const gone = () => void remove(rel, true);
    if (st.isFile()) {
      if (st.size > input.maxFileSize) {
        warn(`skipped /${rel}: ${st.size} bytes is over pacha.max_file_size (${input.maxFileSize})`);
        unverifiable(parentOf(rel));
        remove(rel, true);
        return;
      }
      if (same && p.type === 'file') {
        keep(rel, p);
        return;
      }
      if ((bst ??= exact(local)) === undefined) return gone();
      const entry = makeEntry(rel, 'file', bst);
      if (sameSig && p.type === 'file') {
        put({ path: rel, type: 'file', line: encodeFields(entry), sig: p.sig, oid: p.oid });
        return;
      }
      const node: Node = { path: rel, type: 'file', line: encodeFields(entry), sig: sigUnlessRacy(bst), oid: '' };
      put(node);
      const job = { node, local, entry };
      out.toHash.push(job);
      input.onRead?.(job);
    } else if (st.isSymbolicLink()) {
      if (same && p.type === 'symlink') {
        keep(rel, p);
        return;
      }
      let raw: Buffer;
      try {
        if ((bst ??= exact(local)) === undefined) return gone();
        raw = fs.readlinkSync(local, { encoding: 'buffer' });
      } catch (e) {
        warn(`cannot read symlink /${rel}: ${(e as Error).message}; its previous version is kept`);
        out.kept++;
        keepPrevSubtree(rel);
        return;
      }
      const target = raw.toString('utf8');
      if (!Buffer.from(target).equals(raw)) {
        warn(`skipped symlink /${rel}: its target is not valid UTF-8`);
        unverifiable(parentOf(rel));
        remove(rel, true);
        return;
      }
      const entry = makeEntry(rel, 'symlink', bst, target);
      const oid = blobId(raw);
      out.smallBlobs.set(oid, raw);
      put({ path: rel, type: 'symlink', line: encodeFields(entry), sig: sigUnlessRacy(bst), oid });
    } else if (st.isDirectory()) {
      let node: Node;
      if (same && p.type === 'dir') {
        node = p;
        keep(rel, node);
      } else {
        if ((bst ??= exact(local)) === undefined) return gone();
        node = { path: rel, type: 'dir', line: encodeFields(makeEntry(rel, 'dir', bst)), sig: sigUnlessRacy(bst), oid: p?.type === 'dir' ? p.oid : '' };
        put(node);
      }
      const fresh = p === undefined || p.type !== 'dir';
      if (mode === 'deep' || fresh) {
        if (same && p.type === 'dir' && !isDirty) {
          // The directory's names are unchanged: its children are the cached nodes, already in
          // the copy (same implies a trusted cache). Only the ones that changed are visited.
          for (const cp of cachedChildNodes(rel)) {
            if (cp.type === 'file') {
              // The common case, inline: one plain lstat compared with the cached signature.
              let cst: fs.Stats | undefined;
              try {
                cst = fs.lstatSync(prefix + cp.path, { throwIfNoEntry: false });
              } catch {
                cst = undefined; // visit() below reports it
              }
              if (cst !== undefined && cst.isFile() && cst.size <= input.maxFileSize && sameStat(cp, cst)) continue;
            }
            visit(cp.path, 'deep', false, true);
          }
        } else {
          const names = listDir(local, rel);
          if (names === null) {
            out.kept++;
            keepPrevSubtree(rel);
            return;
          }
          if (fromCopy && !fresh) {
            const now = new Set(names);
            for (const n of cachedChildren(rel)) if (!now.has(n)) remove(rel + '/' + n, true);
          }
          for (const n of names) visit(rel + '/' + n, 'deep', false);
        }
      } else if (mode === 'listed') {
        const names = listDir(local, rel);
        if (names === null) return;
        const now = new Set(names);
        for (const n of cachedChildren(rel)) if (!now.has(n)) remove(rel + '/' + n, true);
        for (const n of names) {
          const c = rel + '/' + n;
          const cm = childMode(c);
          if (cm) visit(c, cm, false);
          else {
            const cp = prevMap.get(c);
            // new names are walked whole; files are cheap to stat; known sub-directories are kept
            if (!cp || cp.type !== 'dir') visit(c, 'deep', false);
          }
        }
      } else {
        for (const c of onPathChildren.get(rel) ?? []) visit(c, childMode(c)!, false);
      }
    } else {
      const kind = st.isFIFO() ? 'a fifo' : st.isSocket() ? 'a socket' : st.isCharacterDevice() || st.isBlockDevice() ? 'a device' : 'not a regular file';
      warn(`skipped /${rel}: ${kind} (pacha keeps files, directories and symlinks)`);
      unverifiable(parentOf(rel));
      remove(rel, true);
    }
  };

  // Dirty paths (relative, within the roots) and the directories that lead to them.
  const dirtySet = new Set<string>();
  const onPath = new Set<string>();
  const onPathChildren = new Map<string, string[]>();
  const rootRels = input.roots.map(treePath);
  if (isDirty) {
    for (const d of input.dirty!) {
      const rel = treePath(d);
      const root = rootRels.find((r) => rel === r || rel.startsWith(r + '/'));
      if (root === undefined) continue;
      dirtySet.add(rel);
      let cur = rel;
      while (cur !== root) {
        const parent = cur.slice(0, cur.lastIndexOf('/'));
        if (!onPath.has(parent)) {
          onPath.add(parent);
          onPathChildren.set(parent, []);
        }
        const kids = onPathChildren.get(parent)!;
        if (!kids.includes(cur)) kids.push(cur);
        cur = parent;
      }
    }
  }
  function childMode(c: string): Mode | undefined {
    if (dirtySet.has(c)) return 'listed';
    if (onPath.has(c)) return 'path';
    return undefined;
  }

  for (const r of input.roots) {
    if (r === '/') {
      warn('watching / as a whole is not supported: watch its directories instead');
      continue;
    }
    const rel = treePath(r);
    if (!isDirty || !prevMap.has(rel)) visit(rel, 'deep', true);
    else {
      const m = childMode(rel);
      if (m) visit(rel, m, true);
    }
  }

  if (removedBelow.size > 0) {
    for (const key of [...nodes.keys()]) {
      if (visited.has(key)) continue;
      if (removedSelf.has(key)) {
        nodes.delete(key);
        continue;
      }
      for (let i = key.lastIndexOf('/'); i > 0; i = key.lastIndexOf('/', i - 1)) {
        if (removedBelow.has(key.slice(0, i))) {
          nodes.delete(key);
          break;
        }
      }
    }
  }
  return out;
}
