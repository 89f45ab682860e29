import { firstParentChain } from '@pacha/shared/git/history';
import { Repository, readHead } from '@pacha/shared/git/repository';

// Snapshots the master does not have yet: local commits on main's first-parent chain after the
// last pushed one, counted in the local repository with the one reader.

export interface Pending {
  /** Local head, null when no snapshot was taken yet. */
  head: string | null;
  count: number;
  /** The walk stopped at `limit` commits: there are at least `count`. */
  atLeast: boolean;
}

export async function countPending(repoDir: string, lastPushed: string | null | undefined, limit = 10_000): Promise<Pending> {
  const head = readHead(repoDir);
  if (head === null) return { head: null, count: 0, atLeast: false };
  const repo = new Repository(repoDir);
  try {
    let count = 0;
    for (const _ of firstParentChain(repo, head, { stop: lastPushed ?? null })) {
      if (count >= limit) return { head, count, atLeast: true };
      count++;
    }
    return { head, count, atLeast: false };
  } finally {
    repo.close();
  }
}
