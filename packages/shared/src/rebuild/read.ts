import fs from 'node:fs';
import path from 'node:path';
import git from 'isomorphic-git';
import { PachaError, UsageError } from '../errors.ts';
import { FORMAT_VERSION, PACHA_DIR, decodeMetadata, decodeRoots, realName, type MetadataEntry } from '../snapshot/format.ts';
import type { BlobSource } from './blob-source.ts';

// Reading the snapshot to rebuild from the staged copy of the master's repository: the ref,
// the commit, every tree and the .pacha files, through BlobSource (positioned reads of whole
// objects, so a pack holding a huge file is never loaded whole). Every failure names the object
// or ref and says the repository is damaged, so the rebuild stops before anything is written.

export interface TreeItem {
  /** Real host path without the leading slash. */
  path: string;
  /** Git tree mode, six digits: 100644, 100755, 120000, 040000, 160000. */
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
}

interface ParsedCommit {
  tree: string;
  parents: string[];
  timeMs: number;
  message: string;
}

function damaged(what: string, err: unknown): PachaError {
  const reason = err instanceof Error ? err.message : String(err);
  return new PachaError(`the repository is damaged: ${what}: ${reason}`, {
    hint: 'nothing was written; check the host folder on the master (pacha-master verify HOST)',
  });
}

function parseCommit(data: Buffer): ParsedCommit {
  const text = data.toString('utf8');
  const blank = text.indexOf('\n\n');
  const headers = (blank < 0 ? text : text.slice(0, blank)).split('\n');
  let tree = '';
  const parents: string[] = [];
  let timeMs = NaN;
  for (const h of headers) {
    if (h.startsWith('tree ')) tree = h.slice(5);
    else if (h.startsWith('parent ')) parents.push(h.slice(7));
    else if (h.startsWith('committer ')) timeMs = Number(/ (\d+) [+-]\d{4}$/.exec(h)?.[1]) * 1000;
  }
  if (!/^[0-9a-f]{40}$/.test(tree) || Number.isNaN(timeMs)) throw new Error('not a well-formed commit');
  return { tree, parents, timeMs, message: blank < 0 ? '' : text.slice(blank + 2) };
}

function parseTree(data: Buffer): { mode: string; name: string; oid: string }[] {
  const out: { mode: string; name: string; oid: string }[] = [];
  let i = 0;
  while (i < data.length) {
    const sp = data.indexOf(0x20, i);
    const nul = data.indexOf(0, sp);
    if (sp < 0 || nul < 0 || nul + 21 > data.length) throw new Error('not a well-formed tree');
    out.push({ mode: data.toString('latin1', i, sp).padStart(6, '0'), name: data.toString('utf8', sp + 1, nul), oid: data.toString('hex', nul + 1, nul + 21) });
    i = nul + 21;
  }
  return out;
}

async function readCommit(objects: BlobSource, oid: string): Promise<ParsedCommit> {
  const o = await objects.readObject(oid);
  if (o.type !== 'commit') throw new Error(`it is a ${o.type}, not a commit`);
  return parseCommit(o.data);
}

/** The commit refs/heads/main (through HEAD) points to. */
export async function resolveHead(repoDir: string, objects: BlobSource): Promise<string> {
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
    await readCommit(objects, oid);
  } catch (e) {
    throw damaged(`refs/heads/main points to ${oid}, which is not a commit in the repository`, e);
  }
  return oid;
}

/** The history of main, newest first (first parents: pacha's history is linear). */
async function history(objects: BlobSource, head: string): Promise<{ oid: string; timeMs: number }[]> {
  const out: { oid: string; timeMs: number }[] = [];
  const seen = new Set<string>();
  let cur: string | undefined = head;
  while (cur && !seen.has(cur)) {
    seen.add(cur);
    let c: ParsedCommit;
    try {
      c = await readCommit(objects, cur);
    } catch (e) {
      throw damaged(`cannot read commit ${cur} on the history of main`, e);
    }
    out.push({ oid: cur, timeMs: c.timeMs });
    cur = c.parents[0];
  }
  return out;
}

/**
 * --at: a commit id (4 to 40 hex digits, on the history of main) or an ISO time (the newest
 * snapshot taken at or before it).
 */
export async function resolveAt(repoDir: string, objects: BlobSource, at: string | undefined): Promise<string> {
  const head = await resolveHead(repoDir, objects);
  if (at === undefined || at === '') return head;
  const commits = await history(objects, head);
  if (/^[0-9a-f]{4,40}$/i.test(at)) {
    const hits = commits.filter((c) => c.oid.startsWith(at.toLowerCase()));
    if (hits.length === 1) return hits[0].oid;
    if (hits.length > 1) throw new UsageError(`--at ${at}: ambiguous, matches ${hits.map((h) => h.oid.slice(0, 12)).join(', ')} (give more digits)`);
    throw new UsageError(`--at ${at}: no snapshot with that commit id on this host's history (pacha log HOST lists them)`);
  }
  const t = Date.parse(at);
  if (Number.isNaN(t)) {
    throw new UsageError(`--at ${at}: not a commit id or a time (accepted: 4-40 hex digits, or an ISO time such as 2026-01-31T12:00:00Z)`);
  }
  const hit = commits.find((c) => c.timeMs <= t);
  if (!hit) {
    throw new UsageError(`--at ${at}: no snapshot that old (the oldest is ${new Date(commits[commits.length - 1].timeMs).toISOString()})`);
  }
  return hit.oid;
}

async function readText(objects: BlobSource, oid: string, what: string): Promise<string> {
  try {
    return (await objects.readAny(oid)).toString('utf8');
  } catch (e) {
    throw damaged(`cannot read ${what} (${oid})`, e);
  }
}

/** Read the commit: roots, metadata and the full tree (trees are read, file contents are not). */
export async function readStagedSnapshot(repoDir: string, objects: BlobSource, commit: string): Promise<StagedSnapshot> {
  let c: ParsedCommit;
  try {
    c = await readCommit(objects, commit);
  } catch (e) {
    throw damaged(`cannot read commit ${commit}`, e);
  }
  const readTreeObject = async (oid: string, where: string) => {
    try {
      const o = await objects.readObject(oid);
      if (o.type !== 'tree') throw new Error(`it is a ${o.type}, not a tree`);
      return parseTree(o.data);
    } catch (e) {
      throw damaged(`cannot read the tree of ${where} (${oid})`, e);
    }
  };
  const tree = new Map<string, TreeItem>();
  const pacha = new Map<string, string>();
  const walk = async (oid: string, prefix: string): Promise<void> => {
    for (const e of await readTreeObject(oid, `/${prefix}`)) {
      const kind = e.mode === '040000' ? 'tree' : e.mode === '160000' ? 'commit' : 'blob';
      if (prefix === '' && e.name === PACHA_DIR) {
        if (kind !== 'tree') throw new PachaError(`the repository is damaged: .pacha is not a directory in commit ${commit}`);
        for (const f of await readTreeObject(e.oid, '/.pacha')) pacha.set(f.name, f.oid);
        continue;
      }
      let name: string;
      try {
        name = realName(e.name);
      } catch (err) {
        throw new PachaError(`the repository is damaged: /${prefix}${e.name}: ${(err as Error).message}`);
      }
      const p = prefix + name;
      tree.set(p, { path: p, mode: e.mode, oid: e.oid, kind });
      if (kind === 'tree') await walk(e.oid, p + '/');
    }
  };
  await walk(c.tree, '');
  for (const f of ['format', 'roots', 'metadata']) {
    if (!pacha.has(f)) throw new PachaError(`the repository is damaged: commit ${commit} has no .pacha/${f}: it is not a pacha snapshot`);
  }
  const format = (await readText(objects, pacha.get('format')!, '.pacha/format')).trim();
  if (format !== `pacha-snapshot ${FORMAT_VERSION}`) {
    throw new PachaError(`commit ${commit}: .pacha/format is "${format}", this pacha reads "pacha-snapshot ${FORMAT_VERSION}"`, {
      hint: 'install the pacha version that wrote this snapshot (or a newer one)',
    });
  }
  const roots = decodeRoots(await readText(objects, pacha.get('roots')!, '.pacha/roots'));
  let entries: MetadataEntry[];
  try {
    entries = decodeMetadata(await readText(objects, pacha.get('metadata')!, '.pacha/metadata'));
  } catch (e) {
    if (e instanceof PachaError) throw e;
    throw new PachaError(`the repository is damaged: commit ${commit}: ${(e as Error).message}`);
  }
  return { repoDir, commit, timeMs: c.timeMs, message: c.message, roots, entries, tree };
}
