import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type { PachaConfig } from '../config.ts';
import type { Logger } from '../log.ts';
import type { StatePaths } from '../state.ts';
import { updateJson } from '../state.ts';
import { effectiveRoots } from '../watchlist.ts';
import { UsageError } from '../errors.ts';
import { treePath } from '../paths.ts';
import { hashObject, serializeCommit } from '../git/objects.ts';
import { ObjectStore } from '../git/pack-index.ts';
import { consolidatePacks } from '../git/consolidate.ts';
import { FileChangedError, hashFile, PackWriter, STREAM_THRESHOLD } from '../git/pack-writer.ts';
import { clearGitCache, gitCache, initRepo, readHead, updateHead } from '../git/repo.ts';
import { encodeEntry, encodeRoots } from './format.ts';
import { compareNodes, describeChanges, orderNodes, type PathChange } from './changes.ts';
import { loadOwners } from './owners.ts';
import { metadataBlob } from './metadata-blob.ts';
import { type HashJob, scan, type ScanOutput } from './scan.ts';
import { loadStatCache, type Node, saveStatCache, type StatCache } from './stat-cache.ts';
import { buildTrees } from './tree-builder.ts';

// One snapshot: scan the roots, read what changed, write one pack (large files in a pack of
// their own so that reading commits never loads them), build trees, commit, move the branch.
// The caller holds the pid lock (the `snapshot` command and the daemon take it).

export interface SnapshotEnv {
  config: PachaConfig;
  state: StatePaths;
  log: Logger;
}

export interface SnapshotOptions {
  message?: string;
  /** Host paths the watcher saw change since the last snapshot; undefined = full reconcile scan. */
  dirty?: string[];
}

export interface ChangeSummary {
  added: number;
  changed: number;
  deleted: number;
  metadataOnly: number;
  /** Paths in the snapshot. */
  total: number;
  bytesRead: number;
}

export interface SnapshotResult {
  /** null when nothing changed (no empty commits). */
  commit: string | null;
  parent: string | null;
  summary: ChangeSummary;
  /** Milliseconds per phase: scan, hash, write, commit. */
  phases: Record<string, number>;
  warnings: string[];
}

export function summaryLine(s: Pick<ChangeSummary, 'added' | 'changed' | 'deleted' | 'metadataOnly'>): string {
  return `${s.added} added, ${s.changed} changed, ${s.deleted} deleted, ${s.metadataOnly} metadata-only`;
}

interface Previous {
  nodes: Map<string, Node>;
  cache: StatCache | null;
  tree: string | null;
  trusted: boolean;
}

function settingsKey(config: PachaConfig, roots: string[], ownersSig: string): string {
  const s = JSON.stringify([config.root, roots, config.ignore, config.maxFileSize, ownersSig]);
  return crypto.createHash('sha1').update(s).digest('hex');
}

/** What the last snapshot holds: from the stat cache when it describes HEAD, else from the commit. */
async function loadPrevious(state: StatePaths, head: string | null, settings: string, log: Logger): Promise<Previous> {
  if (head === null) return { nodes: new Map(), cache: null, tree: null, trusted: false };
  const cache = loadStatCache(state.statCache);
  if (cache && cache.commit === head) return { nodes: cache.byPath, cache, tree: cache.tree, trusted: cache.settings === settings };
  log.debug(`stat cache does not describe ${head.slice(0, 12)}: reading the snapshot instead`);
  // Loaded only here: with a valid stat cache a snapshot never reads git objects this way.
  const git = (await import('isomorphic-git')).default;
  const { readSnapshot, SnapshotReader } = await import('./read.ts');
  const snap = await readSnapshot(state.repo, head);
  const reader = new SnapshotReader(state.repo);
  const rootTree = (await git.readCommit({ fs, gitdir: state.repo, oid: head, cache: gitCache })).commit.tree;
  const blobs = await reader.blobIds(rootTree);
  const trees = await reader.treeIds(rootTree);
  const nodes = new Map<string, Node>();
  const order: Node[] = [];
  for (const e of snap.entries) {
    const oid = e.type === 'dir' ? (trees.get(e.path) ?? '') : (blobs.get(e.path) ?? '');
    const n: Node = { path: e.path, type: e.type, line: encodeEntry(e), sig: '', oid };
    nodes.set(e.path, n);
    order.push(n);
  }
  clearGitCache();
  return { nodes, cache: { commit: head, tree: rootTree, settings: '', nodes: order, byPath: nodes }, tree: rootTree, trusted: false };
}

/** A ctime from the state dir's filesystem clock: entries changed at or after it are racy. */
function racyStamp(state: StatePaths): bigint {
  const f = `${state.statCache}.stamp`;
  fs.writeFileSync(f, String(process.pid));
  return fs.statSync(f, { bigint: true }).ctimeNs;
}

function isMissing(e: unknown): boolean {
  const code = (e as NodeJS.ErrnoException).code;
  return code === 'ENOENT' || code === 'ENOTDIR';
}

/** Read the files the scan found changed; a file that cannot be read keeps its previous version. */
async function readContents(
  jobs: HashJob[],
  sc: ScanOutput,
  prev: Map<string, Node>,
  log: Logger,
  store: (job: HashJob) => Promise<{ oid: string; size: number; bytesRead: number }>,
): Promise<number> {
  let bytesRead = 0;
  let done = 0;
  for (const job of jobs) {
    const rel = job.node.path;
    try {
      const r = await store(job);
      bytesRead += r.bytesRead;
      job.node.oid = r.oid;
      if (r.size !== job.entry.size) {
        // The file changed between the scan and the read: record what was read.
        const st = fs.lstatSync(job.local, { bigint: true });
        job.entry.size = r.size;
        job.entry.mtimeNs = st.mtimeNs;
        job.entry.mode = Number(st.mode) & 0o7777;
        job.node.line = encodeEntry(job.entry);
        job.node.sig = '';
      }
    } catch (e) {
      bytesRead += (e as { bytesRead?: number }).bytesRead ?? 0;
      const p = prev.get(rel);
      if (isMissing(e)) {
        sc.nodes.delete(rel);
      } else if (p) {
        sc.warnings.push(`cannot read /${rel}: ${e instanceof FileChangedError ? 'it kept changing while read' : (e as Error).message}; its previous version is kept`);
        sc.nodes.set(rel, p);
        sc.kept++;
      } else {
        sc.warnings.push(`cannot read /${rel}: ${e instanceof FileChangedError ? 'it kept changing while read' : (e as Error).message}; skipped`);
        sc.nodes.delete(rel);
      }
    }
    if (++done % 500 === 0) log.progress(`reading files: ${done}/${jobs.length}`);
    // Small files are read synchronously, so this loop would never leave the microtask queue:
    // let the event loop turn now and then (timers, signals, the daemon's watcher events).
    if (done % 256 === 0) await new Promise<void>((resolve) => setImmediate(resolve));
  }
  if (jobs.length >= 500) log.progress('');
  return bytesRead;
}

export async function takeSnapshot(env: SnapshotEnv, opts: SnapshotOptions = {}): Promise<SnapshotResult> {
  const { config, state, log } = env;
  const phases: Record<string, number> = {};
  let t = performance.now();
  const lap = (name: string) => {
    const n = performance.now();
    phases[name] = Math.round((n - t) * 10) / 10;
    t = n;
  };

  const roots = effectiveRoots(config, state);
  // An empty watch list (never set, or its file lost) must not become a snapshot that records
  // every file as deleted: a rebuild from it would restore nothing.
  if (roots.length === 0) {
    throw new UsageError('nothing is watched: add paths with `pacha watch PATH...` or pacha.watch in the config', 'pacha watched lists what is watched');
  }
  await initRepo(state.repo);
  const head = await readHead(state.repo);
  const owners = loadOwners(config.root);
  const settings = settingsKey(config, roots, owners.signature);
  const prev = await loadPrevious(state, head, settings, log);
  const racyNs = racyStamp(state);
  const sc = scan(
    { root: config.root, roots, ignore: config.ignore, maxFileSize: config.maxFileSize, prev: prev.cache, trusted: prev.trusted, owners, racyNs, dirty: opts.dirty },
    (data) => hashObject('blob', data),
  );
  lap('scan');

  const objects = path.join(state.repo, 'objects');
  const store = new ObjectStore(objects);
  const known = (oid: string) => store.has(oid);
  const pack = PackWriter.create(path.join(objects, 'pack'), { known });
  let bigPack: PackWriter | undefined;
  try {
    for (const [oid, data] of sc.smallBlobs) pack.addObject('blob', data, oid);
    const bytesRead = await readContents(sc.toHash, sc, prev.nodes, log, (job) => {
      if (job.entry.size <= STREAM_THRESHOLD) return pack.addBlobFromFile(job.local);
      bigPack ??= PackWriter.create(path.join(objects, 'pack'), { known: (oid) => known(oid) || pack.has(oid) });
      return bigPack.addBlobFromFile(job.local);
    });
    lap('hash');

    const cmp = compareNodes(prev.nodes, sc.nodes, sc.fresh);
    const order = orderNodes(sc.nodes, prev.cache?.nodes, prev.nodes, sc.fresh, cmp);
    const metadata = metadataBlob(order, prev.cache);
    const rootRels = roots.filter((r) => r !== '/').map(treePath);
    const tree = buildTrees(sc.nodes, order, cmp.treeChanged, rootRels, { roots: Buffer.from(encodeRoots(roots)), metadata }, (type, data) => pack.addObject(type, data));
    const summary: ChangeSummary = { added: cmp.added, changed: cmp.changed, deleted: cmp.deleted, metadataOnly: cmp.metadataOnly, total: sc.nodes.size, bytesRead };
    for (const w of sc.warnings) log.warn(w);

    let commit: string | null = null;
    let bytesWritten = 0;
    if (tree === prev.tree || (head === null && sc.nodes.size === 0)) {
      pack.abort();
      bigPack?.abort();
      lap('write');
    } else {
      const now = Math.floor(Date.now() / 1000);
      const host = config.hostname;
      let message = summaryLine(summary) + '\n';
      if (opts.message && opts.message.trim() !== '') message += `\n${opts.message.trim()}\n`;
      message += `\nPacha-Host: ${host}\n`;
      commit = pack.addObject('commit', serializeCommit({ tree, parent: head, author: `pacha <pacha@${host}>`, time: now, message }));
      // Large blobs first: the commit must never be visible before what it refers to.
      const big = bigPack ? await bigPack.finish() : null;
      const small = await pack.finish();
      bytesWritten = (big?.bytes ?? 0) + (small?.bytes ?? 0);
      lap('write');
      updateHead(state.repo, commit);
      const merged = await consolidatePacks(state.repo);
      if (merged) log.debug(`merged ${merged.packs} packs into one (${merged.objects} objects)`);
      updateJson(state.status, { lastSnapshot: { commit, time: new Date(now * 1000).toISOString(), summary } });
    }
    const described = commit ?? head;
    if (described !== null) saveStatCache(state.statCache, { commit: described, tree, settings, nodes: order, metadata });
    lap('commit');
    updateJson(state.report, {
      snapshot: { time: new Date().toISOString(), commit, phases, bytesRead, bytesWritten, files: summary.total, filesRead: sc.toHash.length, warnings: sc.warnings.length },
    });
    return { commit, parent: head, summary, phases, warnings: sc.warnings };
  } catch (e) {
    pack.abort();
    bigPack?.abort();
    throw e;
  }
}

export interface LiveDiff {
  /** The snapshot compared against (null: none yet, everything is added). */
  base: string | null;
  changes: PathChange[];
  warnings: string[];
}

/** How the live files differ from the last snapshot. Writes nothing, not even the stat cache. */
export async function diffLive(env: SnapshotEnv): Promise<LiveDiff> {
  const { config, state, log } = env;
  const roots = effectiveRoots(config, state);
  const head = await readHead(state.repo);
  const owners = loadOwners(config.root);
  const prev = await loadPrevious(state, head, settingsKey(config, roots, owners.signature), log);
  const sc = scan(
    { root: config.root, roots, ignore: config.ignore, maxFileSize: config.maxFileSize, prev: prev.cache, trusted: prev.trusted, owners, racyNs: 0n },
    (data) => hashObject('blob', data),
  );
  await readContents(sc.toHash, sc, prev.nodes, log, async (job) => hashFile(job.local));
  return { base: head, changes: describeChanges(prev.nodes, sc.nodes), warnings: sc.warnings };
}
