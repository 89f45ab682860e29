import { PachaError } from '../errors.ts';
import type { Repository } from '../git/repository.ts';
import type { TreeEntry } from '../git/tree.ts';

// What the master lacks: the local commits after the master's head, and the objects reachable
// from them but not from it. Each new commit's tree is compared with its parent's tree and
// identical subtree ids are skipped, so the cost follows what changed, not the size of the tree.

export interface Selection {
  /** New commits, oldest first. */
  commits: string[];
  /** Every object to send (commits, trees, blobs), each once. */
  objects: string[];
}

/** Local commits after `remoteHead` (exclusive), oldest first. Throws if the histories diverge. */
export function commitsAfter(store: Repository, localHead: string, remoteHead: string | null, where: string): string[] {
  if (remoteHead !== null && !store.has(remoteHead)) {
    throw new PachaError(`the master's ${where} is at ${remoteHead}, a commit this host does not have: its history is not this host's`, {
      hint: 'check pacha.hostname (two hosts pushing to one name?); nothing was changed on either side',
    });
  }
  const seen = new Set<string>();
  const order: string[] = [];
  const stack = [localHead];
  let reached = remoteHead === null;
  while (stack.length > 0) {
    const oid = stack.pop()!;
    if (seen.has(oid)) continue;
    seen.add(oid);
    if (oid === remoteHead) {
      reached = true;
      continue;
    }
    order.push(oid);
    for (const p of store.readCommit(oid).parents) stack.push(p);
  }
  if (!reached) {
    throw new PachaError(`the master's ${where} (${remoteHead}) is not an ancestor of this host's snapshot ${localHead}: refusing to replace it`, {
      hint: 'the master holds history this host does not continue (restored or rewritten local repository?); nothing was changed on either side',
    });
  }
  // Depth-first from the head gives newest first for a linear history; sort parents before children.
  return topoOldestFirst(store, order);
}

function topoOldestFirst(store: Repository, commits: string[]): string[] {
  const set = new Set(commits);
  const done = new Set<string>();
  const out: string[] = [];
  const visit = (start: string) => {
    const stack: [string, boolean][] = [[start, false]];
    while (stack.length > 0) {
      const [oid, expanded] = stack.pop()!;
      if (done.has(oid)) continue;
      if (expanded) {
        done.add(oid);
        out.push(oid);
        continue;
      }
      stack.push([oid, true]);
      for (const p of store.readCommit(oid).parents) if (set.has(p) && !done.has(p)) stack.push([p, false]);
    }
  };
  for (const c of commits) visit(c);
  return out;
}

/** Objects of `commits` (oldest first) that their parents' trees do not already hold. */
export function selectObjects(store: Repository, commits: string[]): Selection {
  const sent = new Set<string>();
  const objects: string[] = [];
  const add = (oid: string) => {
    if (sent.has(oid)) return false;
    sent.add(oid);
    objects.push(oid);
    return true;
  };
  const walk = (tree: string, old: string | undefined) => {
    if (tree === old) return;
    if (!add(tree) && old === undefined) return;
    const oldEntries = new Map<string, TreeEntry>();
    if (old !== undefined) for (const e of store.readTree(old)) oldEntries.set(e.name, e);
    for (const e of store.readTree(tree)) {
      const prev = oldEntries.get(e.name);
      if (prev && prev.oid === e.oid) continue;
      if (e.mode === '160000') continue; // gitlinks point outside the repository
      if (e.mode === '40000') walk(e.oid, prev && prev.mode === '40000' ? prev.oid : undefined);
      else add(e.oid);
    }
  };
  for (const c of commits) {
    add(c);
    const info = store.readCommit(c);
    const parentTree = info.parents.length > 0 ? store.readCommit(info.parents[0]).tree : undefined;
    walk(info.tree, parentTree);
  }
  return { commits, objects };
}
