import { type MetadataEntry, comparePaths, decodeFields, lowerBoundPath, modeOfFields } from '../format/entry.ts';
import { gitMode } from '../format/names.ts';
import { pathComparator } from '../format/snapshot.ts';
import type { Node } from './stat-cache.ts';
import { type NodeMap, nodeNow } from './node-map.ts';

// What differs between the previous snapshot's nodes and the new ones.

export type ChangeKind = 'added' | 'deleted' | 'changed' | 'metadata';

export interface PathChange {
  path: string;
  kind: ChangeKind;
  /** For 'changed' and 'metadata': what differs (content, type, target, mode, owner, group, mtime). */
  details: string[];
  before?: MetadataEntry;
  after?: MetadataEntry;
}

export function nodeGitMode(n: Node): string {
  return gitMode({ type: n.type, mode: n.type === 'file' ? modeOfFields(n.line) : 0 });
}

/**
 * The new nodes in path byte order, reusing the previous order when possible. `inPlace`: the
 * previous order is not needed any more and may become the new one (no copy: a large array is
 * allocated where the garbage collector must mark it all, and the daemon makes one per change).
 */
export function orderNodes(nodes: NodeMap, prevOrder: Node[] | undefined, prevMap: Map<string, Node>, fresh: Node[], cmp0?: Comparison, inPlace = false): Node[] {
  if (prevOrder && cmp0 && cmp0.added === 0 && cmp0.deleted === 0 && prevOrder.length === nodes.size) {
    // Same paths as before: the previous order with the changed nodes put in their places.
    const out = inPlace ? prevOrder : prevOrder.slice();
    if (fresh.length > 0) {
      const at = new Map<string, number>();
      if (fresh.length > 64) prevOrder.forEach((n, i) => at.set(n.path, i));
      for (const n of fresh) {
        if (nodes.get(n.path) !== n) continue;
        const i = fresh.length > 64 ? (at.get(n.path) ?? -1) : findPath(prevOrder, n.path);
        if (i < 0) throw new Error(`internal: ${n.path} missing from the previous order`);
        out[i] = n;
      }
    }
    return out;
  }
  const kept: Node[] = [];
  for (const p of prevOrder ?? []) {
    const n = nodeNow(nodes, p);
    if (n) kept.push(n);
  }
  if (kept.length === nodes.size) return kept;
  // Only nodes made in this scan can be new paths.
  const added: Node[] = [];
  for (const n of fresh) if (!prevMap.has(n.path) && nodes.get(n.path) === n) added.push(n);
  const cmp = pathComparator(allPaths(kept, added));
  added.sort((a, b) => cmp(a.path, b.path));
  if (kept.length === 0) return added;
  const out: Node[] = [];
  let i = 0;
  let j = 0;
  while (i < kept.length && j < added.length) {
    if (cmp(kept[i].path, added[j].path) <= 0) out.push(kept[i++]);
    else out.push(added[j++]);
  }
  while (i < kept.length) out.push(kept[i++]);
  while (j < added.length) out.push(added[j++]);
  return out;
}

function* allPaths(...lists: Node[][]): Iterable<string> {
  for (const list of lists) for (const n of list) yield n.path;
}

/** Binary search by path bytes in a list in path byte order; -1 when absent. */
function findPath(list: Node[], p: string): number {
  const i = lowerBoundPath(list.length, (k) => list[k].path, p);
  return i < list.length && list[i].path === p ? i : -1;
}

export interface Comparison {
  added: number;
  changed: number;
  deleted: number;
  metadataOnly: number;
  /** Paths that differ in any way (content, type, metadata, presence): their directories' trees change. */
  touched: string[];
}

/** Count changes; only nodes made in this scan (fresh) can differ from the previous ones. */
export function compareNodes(prev: Map<string, Node>, next: NodeMap, fresh: Node[]): Comparison {
  const c: Comparison = { added: 0, changed: 0, deleted: 0, metadataOnly: 0, touched: [] };
  for (const n of fresh) {
    const path = n.path;
    if (next.get(path) !== n) continue;
    const p = prev.get(path);
    if (p === n) continue;
    if (!p) {
      c.added++;
      c.touched.push(path);
    } else if (p.type !== n.type || (n.type !== 'dir' && p.oid !== n.oid)) {
      c.changed++;
      c.touched.push(path);
    } else if (p.line !== n.line) {
      c.metadataOnly++;
      c.touched.push(path);
    }
  }
  // Every path of next is either new (counted above) or was in prev: the rest of prev is gone.
  if (prev.size > next.size - c.added) {
    for (const path of prev.keys()) {
      if (!next.has(path)) {
        c.deleted++;
        c.touched.push(path);
      }
    }
  }
  return c;
}

/** Every difference, path by path, for `pacha diff`. */
export function describeChanges(prev: Map<string, Node>, next: NodeMap): PathChange[] {
  const out: PathChange[] = [];
  for (const [path, n] of next) {
    const p = prev.get(path);
    if (p === n) continue;
    if (!p) {
      out.push({ path, kind: 'added', details: [], after: decodeFields(path, n.line) });
      continue;
    }
    if (p.line === n.line && p.oid === n.oid) continue;
    const a = decodeFields(path, p.line);
    const b = decodeFields(path, n.line);
    const details: string[] = [];
    if (a.type !== b.type) details.push('type');
    else if (a.type === 'symlink' && a.target !== b.target) details.push('target');
    else if (a.type === 'file' && p.oid !== n.oid) details.push('content');
    if (a.mode !== b.mode) details.push('mode');
    if (a.uid !== b.uid || a.user !== b.user) details.push('owner');
    if (a.gid !== b.gid || a.group !== b.group) details.push('group');
    if (a.mtimeNs !== b.mtimeNs) details.push('mtime');
    if ((a.xattrs ?? '') !== (b.xattrs ?? '')) details.push('xattrs');
    if (details.length === 0) continue;
    const kind: ChangeKind = details.some((d) => d === 'type' || d === 'target' || d === 'content') ? 'changed' : 'metadata';
    out.push({ path, kind, details, before: a, after: b });
  }
  for (const [path, p] of prev) if (!next.has(path)) out.push({ path, kind: 'deleted', details: [], before: decodeFields(path, p.line) });
  return out.sort((x, y) => comparePaths(x.path, y.path));
}
