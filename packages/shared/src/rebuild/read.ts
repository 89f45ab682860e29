import fs from 'node:fs';
import path from 'node:path';
import git from 'isomorphic-git';
import { PachaError, UsageError } from '../errors.ts';
import {
  FORMAT_VERSION,
  PACHA_DIR,
  decodeMetadata,
  decodeRoots,
  realName,
  type MetadataEntry,
} from '../snapshot/format.ts';

// Reading the snapshot to rebuild from the staged copy of the master's repository, with
// isomorphic-git. Every failure names the object or ref and says the repository is damaged,
// so the rebuild stops before anything is written.

export interface TreeItem {
  /** Real host path without the leading slash. */
  path: string;
  /** Git tree mode: 100644, 100755, 120000, 040000 (others are refused by validation). */
  mode: string;
  oid: string;
  kind: 'blob' | 'tree' | 'commit';
}

export interface StagedSnapshot {
  repoDir: string;
  commit: string;
  /** Commit time, ms since the epoch. */
  timeMs: number;
  message: string;
  roots: string[];
  entries: MetadataEntry[];
  /** Every path of the commit's tree outside .pacha/, by real path. */
  tree: Map<string, TreeItem>;
  /** Shared isomorphic-git cache: keeps pack indexes and packs open across reads. */
  cache: object;
}

function damaged(what: string, err: unknown): PachaError {
  const reason = err instanceof Error ? err.message : String(err);
  return new PachaError(`the repository is damaged: ${what}: ${reason}`, {
    hint: 'nothing was written; check the host folder on the master (pacha-master verify HOST)',
  });
}

/** The commit refs/heads/main (through HEAD) points to. */
export async function resolveHead(repoDir: string): Promise<string> {
  if (!fs.existsSync(path.join(repoDir, 'HEAD'))) throw new PachaError(`the repository is damaged: ${repoDir} has no HEAD`);
  let oid: string;
  try {
    oid = await git.resolveRef({ fs, gitdir: repoDir, ref: 'HEAD' });
  } catch (e) {
    throw new PachaError(`the repository has no snapshot: HEAD does not lead to a commit (${(e as Error).message})`, {
      hint: 'has this host ever pushed? (pacha-master log HOST)',
    });
  }
  try {
    const { type } = await git.readObject({ fs, gitdir: repoDir, oid, format: 'parsed' });
    if (type !== 'commit') throw new Error(`it is a ${type}, not a commit`);
  } catch (e) {
    throw damaged(`refs/heads/main points to ${oid}, which is not a commit in the repository`, e);
  }
  return oid;
}

/**
 * --at: a commit id (4 to 40 hex digits, on the history of main) or an ISO time (the newest
 * snapshot taken at or before it).
 */
export async function resolveAt(repoDir: string, at: string | undefined, cache: object = {}): Promise<string> {
  const head = await resolveHead(repoDir);
  if (at === undefined || at === '') return head;
  let history: Awaited<ReturnType<typeof git.log>>;
  try {
    history = await git.log({ fs, gitdir: repoDir, ref: head, cache });
  } catch (e) {
    throw damaged('cannot walk the history of main', e);
  }
  if (/^[0-9a-f]{4,40}$/i.test(at)) {
    const hits = history.filter((c) => c.oid.startsWith(at.toLowerCase()));
    if (hits.length === 1) return hits[0].oid;
    if (hits.length > 1) throw new UsageError(`--at ${at}: ambiguous, matches ${hits.map((h) => h.oid.slice(0, 12)).join(', ')} (give more digits)`);
    throw new UsageError(`--at ${at}: no snapshot with that commit id on this host's history (pacha log HOST lists them)`);
  }
  const t = Date.parse(at);
  if (Number.isNaN(t)) {
    throw new UsageError(`--at ${at}: not a commit id or a time (accepted: 4-40 hex digits, or an ISO time such as 2026-01-31T12:00:00Z)`);
  }
  const hit = history.find((c) => c.commit.committer.timestamp * 1000 <= t);
  if (!hit) {
    const oldest = history[history.length - 1];
    throw new UsageError(`--at ${at}: no snapshot that old (the oldest is ${new Date(oldest.commit.committer.timestamp * 1000).toISOString()})`);
  }
  return hit.oid;
}

async function readText(repoDir: string, oid: string, what: string, cache: object): Promise<string> {
  try {
    const { blob } = await git.readBlob({ fs, gitdir: repoDir, oid, cache });
    return Buffer.from(blob).toString('utf8');
  } catch (e) {
    throw damaged(`cannot read ${what} (${oid})`, e);
  }
}

/** Read the commit: roots, metadata and the full tree (trees are read, blobs are not). */
export async function readStagedSnapshot(repoDir: string, commit: string, cache: object = {}): Promise<StagedSnapshot> {
  let c: Awaited<ReturnType<typeof git.readCommit>>;
  try {
    c = await git.readCommit({ fs, gitdir: repoDir, oid: commit, cache });
  } catch (e) {
    throw damaged(`cannot read commit ${commit}`, e);
  }
  const tree = new Map<string, TreeItem>();
  const pacha = new Map<string, string>();
  const walk = async (oid: string, prefix: string): Promise<void> => {
    let entries;
    try {
      entries = (await git.readTree({ fs, gitdir: repoDir, oid, cache })).tree;
    } catch (e) {
      throw damaged(`cannot read the tree of /${prefix || ''} (${oid})`, e);
    }
    for (const e of entries) {
      if (prefix === '' && e.path === PACHA_DIR) {
        if (e.type !== 'tree') throw new PachaError(`the repository is damaged: .pacha is not a directory in commit ${commit}`);
        const inner = (await git.readTree({ fs, gitdir: repoDir, oid: e.oid, cache }).catch((err) => {
          throw damaged('cannot read .pacha/', err);
        })).tree;
        for (const f of inner) pacha.set(f.path, f.oid);
        continue;
      }
      let name: string;
      try {
        name = realName(e.path);
      } catch (err) {
        throw new PachaError(`the repository is damaged: /${prefix}${e.path}: ${(err as Error).message}`);
      }
      const p = prefix + name;
      tree.set(p, { path: p, mode: e.mode, oid: e.oid, kind: e.type });
      if (e.type === 'tree') await walk(e.oid, p + '/');
    }
  };
  await walk(c.commit.tree, '');
  for (const f of ['format', 'roots', 'metadata']) {
    if (!pacha.has(f)) throw new PachaError(`the repository is damaged: commit ${commit} has no .pacha/${f}: it is not a pacha snapshot`);
  }
  const format = (await readText(repoDir, pacha.get('format')!, '.pacha/format', cache)).trim();
  if (format !== `pacha-snapshot ${FORMAT_VERSION}`) {
    throw new PachaError(`commit ${commit}: .pacha/format is "${format}", this pacha reads "pacha-snapshot ${FORMAT_VERSION}"`, {
      hint: 'install the pacha version that wrote this snapshot (or a newer one)',
    });
  }
  const roots = decodeRoots(await readText(repoDir, pacha.get('roots')!, '.pacha/roots', cache));
  let entries: MetadataEntry[];
  try {
    entries = decodeMetadata(await readText(repoDir, pacha.get('metadata')!, '.pacha/metadata', cache));
  } catch (e) {
    if (e instanceof PachaError) throw e;
    throw new PachaError(`the repository is damaged: commit ${commit}: ${(e as Error).message}`);
  }
  return {
    repoDir,
    commit,
    timeMs: c.commit.committer.timestamp * 1000,
    message: c.commit.message,
    roots,
    entries,
    tree,
    cache,
  };
}

/** A blob's bytes. (isomorphic-git reads whole objects: memory follows the largest file.) */
export async function readBlobBytes(snap: StagedSnapshot, oid: string): Promise<Uint8Array> {
  try {
    return (await git.readBlob({ fs, gitdir: snap.repoDir, oid, cache: snap.cache })).blob;
  } catch (e) {
    throw damaged(`cannot read blob ${oid}`, e);
  }
}
