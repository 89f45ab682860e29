import { PachaError, UsageError } from '../errors.ts';
import type { CommitInfo } from './commit.ts';
import type { Repository } from './repository.ts';

// A host's history is the first-parent chain from refs/heads/main: every snapshot has the one
// before it as its first parent. `pacha log`, `pacha-master log`, rebuild --at, the daemon's
// pending count and the master's forward check all walk this one chain, with the one reader.

export interface HistoryEntry extends CommitInfo {
  oid: string;
}

/** The first-parent chain from head, newest first; stops at `stop` (not yielded) or after `limit` commits. */
export function* firstParentChain(repo: Repository, head: string, opts: { stop?: string | null; limit?: number } = {}): Generator<HistoryEntry> {
  const seen = new Set<string>();
  let cur: string | undefined = head;
  let n = 0;
  while (cur !== undefined && cur !== opts.stop && (opts.limit === undefined || n < opts.limit)) {
    // A cycle cannot exist among hash-checked commits; refuse one rather than loop.
    if (seen.has(cur)) throw new PachaError(`the history of ${repo.gitdir} loops at ${cur}`);
    seen.add(cur);
    const c = repo.readCommit(cur);
    yield { ...c, oid: cur };
    n++;
    cur = c.parents[0];
  }
}

const AT_ACCEPTED = 'accepted: a commit id, full or abbreviated (4-40 hex digits), or an ISO time such as 2026-01-31T12:00:00Z';

/**
 * --at: a commit id (4 to 40 hex digits) on the first-parent chain from head, or an ISO time
 * (the newest snapshot on the chain taken at or before it). Errors exit with 2.
 */
export function resolveAt(repo: Repository, head: string, at: string | undefined): string {
  if (at === undefined || at === '') return head;
  const commits = [...firstParentChain(repo, head)];
  if (/^[0-9a-f]{4,40}$/i.test(at)) {
    const hits = commits.filter((c) => c.oid.startsWith(at.toLowerCase()));
    if (hits.length === 1) return hits[0].oid;
    if (hits.length > 1) throw new UsageError(`--at ${at}: ambiguous, matches ${hits.map((h) => h.oid.slice(0, 12)).join(', ')} (give more digits)`);
    // All digits may be a time (a year): fall through.
    if (!/^\d+$/.test(at)) throw new UsageError(`--at ${at}: no snapshot with that commit id on this host's history (the log lists them)`);
  }
  const t = Date.parse(at);
  if (Number.isNaN(t)) throw new UsageError(`--at ${at}: not a snapshot (${AT_ACCEPTED})`);
  const hit = commits.find((c) => c.time * 1000 <= t);
  if (!hit) {
    const oldest = commits.length > 0 ? new Date(commits[commits.length - 1].time * 1000).toISOString() : 'none';
    throw new UsageError(`--at ${at}: no snapshot at or before ${new Date(t).toISOString()}: no snapshot that old (the oldest is from ${oldest})`);
  }
  return hit.oid;
}
