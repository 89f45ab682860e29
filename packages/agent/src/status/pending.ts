import fs from 'node:fs';
import git from 'isomorphic-git';

// Snapshots the master does not have yet: local commits after the last pushed one, counted in
// the local repository (history is linear: each snapshot has the previous one as its parent).

export interface Pending {
  /** Local head, null when no snapshot was taken yet. */
  head: string | null;
  count: number;
  /** The walk stopped at `limit` commits: there are at least `count`. */
  atLeast: boolean;
}

export async function countPending(repoDir: string, lastPushed: string | null | undefined, limit = 10_000): Promise<Pending> {
  let head: string;
  try {
    head = await git.resolveRef({ fs, gitdir: repoDir, ref: 'refs/heads/main' });
  } catch {
    return { head: null, count: 0, atLeast: false };
  }
  const cache = {};
  let count = 0;
  let oid: string | undefined = head;
  while (oid !== undefined && oid !== lastPushed) {
    if (count >= limit) return { head, count, atLeast: true };
    count++;
    const { commit } = await git.readCommit({ fs, gitdir: repoDir, oid, cache });
    oid = commit.parent[0];
  }
  return { head, count, atLeast: false };
}
