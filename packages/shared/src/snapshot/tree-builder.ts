import type { ObjectType } from '../git/objects.ts';
import { serializeTree, type TreeEntry } from '../git/tree.ts';
import { lowerBoundPath } from '../format/entry.ts';
import { gitName, PACHA_NAME } from '../format/names.ts';
import { dirLine, FORMAT_NAME, FORMAT_VERSION, formatText, ROOTS_NAME, SELF, TOP_METADATA_NAME } from '../format/snapshot.ts';
import { nodeGitMode } from './changes.ts';
import type { Node } from './stat-cache.ts';
import type { NodeMap } from './node-map.ts';

// Builds the commit's tree in format 2 (format/snapshot.ts). Every recorded directory is a
// tree holding its entries and its `.pacha` (its own record and its files' and symlinks'). Only
// directories with a change in or below them are serialised again; the others keep the tree id
// remembered in the stat cache, and git shares their objects with the previous snapshot.

export type AddObject = (type: ObjectType, data: Buffer) => string;

/** The top .pacha/ directory's content besides the format file. */
export interface PachaFiles {
  /** .pacha/roots */
  roots: Buffer;
  /** Further generated files by name -> blob id (a package manifest, accounts; names checked by the caller). */
  extra: ReadonlyMap<string, string>;
}

function parentOf(p: string): string {
  const i = p.lastIndexOf('/');
  return i < 0 ? '' : p.slice(0, i);
}

function baseName(p: string): string {
  return p.slice(p.lastIndexOf('/') + 1);
}

export function buildTrees(
  nodes: NodeMap,
  /** The same nodes in path byte order. */
  order: Node[],
  /** Paths that differ from the previous snapshot (added, changed, deleted, metadata). */
  touched: string[],
  rootRels: string[],
  pacha: PachaFiles,
  add: AddObject,
  /** Build every directory's tree again (the previous snapshot is of another format). */
  everything = false,
): { tree: string; rebuilt: Node[] } {
  const rootSet = new Set(rootRels);
  const dirty = new Set<string>();
  const mark = (p: string) => {
    // A directory's record is in its own .pacha, a file's in its directory's; walk up to the
    // root the path belongs to (containers above the roots are always built again).
    let cur = nodes.get(p)?.type === 'dir' ? p : parentOf(p);
    while (cur !== '' && !dirty.has(cur)) {
      if (nodes.get(cur)?.type !== 'dir') break;
      dirty.add(cur);
      if (rootSet.has(cur)) break;
      cur = parentOf(cur);
    }
  };
  if (everything) {
    for (const n of order) if (n.type === 'dir') dirty.add(n.path);
  } else for (const p of touched) mark(p);
  const rebuilt: Node[] = [];
  if (dirty.size > 0) {
    const deepestFirst = [...dirty].sort((a, b) => depth(b) - depth(a));
    for (const d of deepestFirst) {
      const node = nodes.get(d)!;
      const lines = [dirLine(SELF, node.line)];
      const entries: TreeEntry[] = [];
      // The paths below d/ form one run in path byte order; its direct children in name order.
      // The paths below a sub-directory form a run of their own, skipped as a whole.
      const pre = d + '/';
      let lastRun = 0;
      for (let i = lowerBoundPath(order.length, (k) => order[k].path, pre); i < order.length && order[i].path.startsWith(pre); ) {
        const c = order[i];
        const slash = c.path.indexOf('/', pre.length);
        if (slash >= 0) {
          const end = endOfRun(order, i, c.path.slice(0, slash + 1), lastRun);
          lastRun = end - i;
          i = end;
          continue;
        }
        const name = c.path.slice(pre.length);
        if (c.type === 'dir' && c.oid === '') throw new Error(`internal: /${c.path} has no tree`);
        entries.push({ name: gitName(name, FORMAT_VERSION), mode: nodeGitMode(c), oid: c.oid });
        if (c.type !== 'dir') lines.push(dirLine(name, c.line));
        i++;
      }
      entries.push({ name: PACHA_NAME, mode: '100644', oid: add('blob', Buffer.from(lines.join('\n') + '\n')) });
      node.oid = add('tree', serializeTree(entries));
      rebuilt.push(node);
    }
  }

  const rootNodes: Node[] = [];
  for (const r of rootRels) {
    const n = nodes.get(r);
    if (n) rootNodes.push(n);
  }
  return { tree: buildTopTree(rootNodes, pacha, add), rebuilt };
}

/**
 * The end of the run of paths starting with `pre` that holds index `from`: first the guess (the
 * length of the sibling run before it: directories of one tree tend to be alike), else
 * galloping, then bisecting.
 */
function endOfRun(order: Node[], from: number, pre: string, guess: number): number {
  const inRun = (i: number) => i < order.length && order[i].path.startsWith(pre);
  if (guess > 0 && inRun(from + guess - 1) && !inRun(from + guess)) return from + guess;
  let lo = from; // in the run
  let step = 1;
  while (inRun(lo + step)) {
    lo += step;
    step *= 2;
  }
  let hi = Math.min(lo + step, order.length); // not in the run (or the end)
  while (hi - lo > 1) {
    const mid = (lo + hi) >>> 1;
    if (inRun(mid)) lo = mid;
    else hi = mid;
  }
  return hi;
}

/**
 * The commit's root tree: .pacha/ and the containers leading to each root (whose own tree or
 * blob ids are known). A container holding watched files or symlinks gets a .pacha with their
 * records (the top directory's go to .pacha/top).
 */
export function buildTopTree(roots: Node[], pacha: PachaFiles, add: AddObject): string {
  interface Dir {
    dirs: Map<string, Dir>;
    leaves: TreeEntry[];
    lines: string[];
  }
  const newDir = (): Dir => ({ dirs: new Map(), leaves: [], lines: [] });
  const top = newDir();
  for (const n of roots) {
    const parts = n.path.split('/');
    let cur = top;
    parts.slice(0, -1).forEach((part, i) => {
      const name = gitName(part, FORMAT_VERSION, i === 0);
      let next = cur.dirs.get(name);
      if (!next) cur.dirs.set(name, (next = newDir()));
      cur = next;
    });
    const name = baseName(n.path);
    cur.leaves.push({ name: gitName(name, FORMAT_VERSION, parts.length === 1), mode: nodeGitMode(n), oid: n.oid });
    if (n.type !== 'dir') cur.lines.push(dirLine(name, n.line));
  }
  const metadata = (d: Dir) => Buffer.from(d.lines.join('\n') + '\n');
  const files: TreeEntry[] = [
    { name: FORMAT_NAME, mode: '100644', oid: add('blob', Buffer.from(formatText())) },
    { name: ROOTS_NAME, mode: '100644', oid: add('blob', pacha.roots) },
  ];
  if (top.lines.length > 0) files.push({ name: TOP_METADATA_NAME, mode: '100644', oid: add('blob', metadata(top)) });
  for (const [name, oid] of pacha.extra) files.push({ name, mode: '100644', oid });
  const write = (d: Dir, isTop: boolean): string => {
    const entries = [...d.leaves];
    for (const [name, sub] of d.dirs) entries.push({ name, mode: '040000', oid: write(sub, false) });
    if (!isTop && d.lines.length > 0) entries.push({ name: PACHA_NAME, mode: '100644', oid: add('blob', metadata(d)) });
    return add('tree', serializeTree(entries));
  };
  top.leaves.push({ name: PACHA_NAME, mode: '040000', oid: add('tree', serializeTree(files)) });
  return write(top, true);
}

function depth(p: string): number {
  let n = 0;
  for (let i = p.indexOf('/'); i >= 0; i = p.indexOf('/', i + 1)) n++;
  return n;
}
