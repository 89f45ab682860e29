import type { ObjectType, TreeEntry } from '../git/objects.ts';
import { serializeTree } from '../git/objects.ts';
import { FORMAT_FILE, FORMAT_VERSION, METADATA_FILE, PACHA_DIR, ROOTS_FILE, gitName, gitPath, lowerBoundPath } from './format.ts';
import { nodeGitMode } from './changes.ts';
import type { Node } from './stat-cache.ts';
import type { NodeMap } from './node-map.ts';

// Builds the commit's tree. Only directories with a change below them are serialised again;
// the others keep the tree id remembered in the stat cache. Directories that end up empty have
// no tree (git cannot hold them) and live in .pacha/metadata only.

export type AddObject = (type: ObjectType, data: Buffer) => string;

function parentOf(p: string): string {
  const i = p.lastIndexOf('/');
  return i < 0 ? '' : p.slice(0, i);
}

export function buildTrees(
  nodes: NodeMap,
  /** The same nodes in .pacha/metadata order. */
  order: Node[],
  treeChanged: string[],
  rootRels: string[],
  /** The .pacha/roots content and the id of the .pacha/metadata blob (added by the caller). */
  pacha: { roots: Buffer; metadataId: string },
  add: AddObject,
): string {
  const rootSet = new Set(rootRels);
  const dirty = new Set<string>();
  for (const p of treeChanged) {
    let cur = nodes.get(p)?.type === 'dir' ? p : parentOf(p);
    // Walk up to the root this path belongs to; containers above the roots are always rebuilt.
    while (cur !== '' && !dirty.has(cur)) {
      if (nodes.get(cur)?.type !== 'dir') break;
      dirty.add(cur);
      if (rootSet.has(cur)) break;
      cur = parentOf(cur);
    }
  }
  if (dirty.size > 0) {
    // Children of each dirty directory: the paths below d/ form one run in metadata (byte) order.
    const kids = new Map<string, Node[]>();
    for (const d of dirty) {
      const pre = d + '/';
      const list: Node[] = [];
      for (let i = lowerBoundPath(order.length, (i) => order[i].path, pre); i < order.length && order[i].path.startsWith(pre); i++) {
        if (order[i].path.indexOf('/', pre.length) < 0) list.push(order[i]);
      }
      kids.set(d, list);
    }
    const deepestFirst = [...dirty].sort((a, b) => depth(b) - depth(a));
    for (const d of deepestFirst) {
      const entries: TreeEntry[] = [];
      for (const c of kids.get(d)!) {
        if (c.type === 'dir' && c.oid === '') continue;
        entries.push({ name: gitName(c.path.slice(c.path.lastIndexOf('/') + 1)), mode: nodeGitMode(c), oid: c.oid });
      }
      const node = nodes.get(d)!;
      node.oid = entries.length === 0 ? '' : add('tree', serializeTree(entries));
    }
  }

  const rootNodes: { rel: string; node: Node }[] = [];
  for (const r of rootRels) {
    const n = nodes.get(r);
    if (n) rootNodes.push({ rel: r, node: n });
  }
  return buildTopTree(rootNodes, pacha, add);
}

/**
 * The commit's root tree: .pacha/ and the directories leading to each root, whose own tree (or
 * blob) ids are known. A root directory without a tree (empty) is left out.
 */
export function buildTopTree(roots: { rel: string; node: Node }[], pacha: { roots: Buffer; metadataId: string }, add: AddObject): string {
  interface Dir {
    dirs: Map<string, Dir>;
    leaves: TreeEntry[];
  }
  const top: Dir = { dirs: new Map(), leaves: [] };
  for (const { rel, node: n } of roots) {
    if (n.type === 'dir' && n.oid === '') continue;
    const parts = gitPath(rel).split('/');
    let cur = top;
    for (const part of parts.slice(0, -1)) {
      let next = cur.dirs.get(part);
      if (!next) cur.dirs.set(part, (next = { dirs: new Map(), leaves: [] }));
      cur = next;
    }
    cur.leaves.push({ name: parts[parts.length - 1], mode: nodeGitMode(n), oid: n.oid });
  }
  const pachaTree = add(
    'tree',
    serializeTree([
      { name: FORMAT_FILE.slice(PACHA_DIR.length + 1), mode: '100644', oid: add('blob', Buffer.from(`pacha-snapshot ${FORMAT_VERSION}\n`)) },
      { name: ROOTS_FILE.slice(PACHA_DIR.length + 1), mode: '100644', oid: add('blob', pacha.roots) },
      { name: METADATA_FILE.slice(PACHA_DIR.length + 1), mode: '100644', oid: pacha.metadataId },
    ]),
  );
  const write = (d: Dir): string => {
    const entries = [...d.leaves];
    for (const [name, sub] of d.dirs) entries.push({ name, mode: '040000', oid: write(sub) });
    return add('tree', serializeTree(entries));
  };
  top.leaves.push({ name: PACHA_DIR, mode: '040000', oid: pachaTree });
  return write(top);
}


function depth(p: string): number {
  let n = 0;
  for (let i = p.indexOf('/'); i >= 0; i = p.indexOf('/', i + 1)) n++;
  return n;
}
