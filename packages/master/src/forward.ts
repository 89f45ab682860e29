import { checkObject } from '@pacha/shared/git/fsck';
import { firstParentChain } from '@pacha/shared/git/history';
import type { ObjectType } from '@pacha/shared/git/objects';
import type { Repository } from '@pacha/shared/git/repository';
import { parseTree, type TreeEntry } from '@pacha/shared/git/tree';
import { errorMessage } from '@pacha/shared/errors';
import { Refusal } from './host-view.ts';

// The one definition of "forward" for refs/heads/main on the master: the new commit's
// first-parent chain contains the old main (or there was none), and everything the new commits
// bring is present, of the type its parent says, hash-checked by the reader and well-formed.
// A merge is refused: pacha's history is linear, and a second parent would be history that the
// rebuild and `log` (which follow first parents) never show.

function refuse(message: string): never {
  throw new Refusal('denied', `refs/heads/main: ${message}`);
}

/** Throws Refusal unless moving main from `old` to `next` is forward. */
export function checkForward(repo: Repository, old: string | null, next: string, verified: (oid: string) => ObjectType | undefined = () => undefined): void {
  if (old === next) return;
  const fresh: string[] = [];
  let reached = old === null;
  try {
    for (const c of firstParentChain(repo, next)) {
      if (c.oid === old) {
        reached = true;
        break;
      }
      if (c.parents.length > 1) refuse(`commit ${c.oid} is a merge (accepted: commits with one parent; history on the master is linear)`);
      fresh.push(c.oid);
    }
  } catch (e) {
    if (e instanceof Refusal) throw e;
    refuse(`the history of ${next} is not complete on the master (${errorMessage(e)}); upload the objects first`);
  }
  if (!reached) refuse(`${next} does not have ${old} on its first-parent chain; history on the master only moves forward`);
  // Oldest first: each commit's tree is compared with its parent's, so unchanged subtrees (already
  // checked with the parent, or part of the old main's history) are not read again.
  for (const oid of fresh.reverse()) {
    try {
      const c = repo.readCommit(oid);
      const bad = checkObject('commit', repo.read(oid).content);
      if (bad) refuse(`commit ${oid}: ${bad}`);
      const parentTree = c.parents.length > 0 ? repo.readCommit(c.parents[0]).tree : undefined;
      checkTree(repo, c.tree, parentTree, verified);
    } catch (e) {
      if (e instanceof Refusal) throw e;
      refuse(`the history of ${next} is not complete on the master (${errorMessage(e)}); upload the objects first`);
    }
  }
}

function checkTree(repo: Repository, tree: string, old: string | undefined, verified: (oid: string) => ObjectType | undefined): void {
  if (tree === old) return;
  const obj = repo.read(tree);
  if (obj.type !== 'tree') refuse(`object ${tree} is a ${obj.type}, expected a tree`);
  const bad = checkObject('tree', obj.content);
  if (bad) refuse(`tree ${tree}: ${bad}`);
  const before = new Map<string, TreeEntry>();
  if (old !== undefined) for (const e of repo.readTree(old)) before.set(e.name, e);
  for (const e of parseTree(obj.content)) {
    const prev = before.get(e.name);
    if (prev && prev.oid === e.oid && prev.mode === e.mode) continue;
    if (e.mode === '160000') refuse(`tree ${tree}: ${e.name} is a submodule (not accepted)`);
    if (e.mode === '40000') checkTree(repo, e.oid, prev?.mode === '40000' ? prev.oid : undefined, verified);
    else {
      // A blob of a pack this master just verified whole needs no second look.
      const t = verified(e.oid) ?? repo.typeOf(e.oid);
      if (t === undefined) refuse(`object ${e.oid} (${e.name} in tree ${tree}) is missing`);
      if (t !== 'blob') refuse(`object ${e.oid} (${e.name} in tree ${tree}) is a ${t}, expected a blob`);
    }
  }
}
