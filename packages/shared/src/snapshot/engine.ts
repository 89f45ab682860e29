import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type { PachaConfig } from '../config.ts';
import type { Logger } from '../log.ts';
import type { StatePaths } from '../state.ts';
import { effectiveRoots } from '../watchlist.ts';
import { UsageError } from '../errors.ts';
import { treePath } from '../paths.ts';
import { hashObject, type ObjectType, serializeCommit } from '../git/objects.ts';
import { RepoObjects } from '../git/object-store.ts';
import { ObjectStore } from '../git/pack-index.ts';
import { consolidatePacks } from '../git/consolidate.ts';
import { FileChangedError, hashFile, PackWriter, STREAM_THRESHOLD } from '../git/pack-writer.ts';
import { clearGitCache, gitCache, initRepo, readHead, updateHead } from '../git/repo.ts';
import { encodeEntry, encodeRoots } from './format.ts';
import { compareNodes, describeChanges, orderNodes, type PathChange } from './changes.ts';
import { loadOwners, type Owners } from './owners.ts';
import { metadataBlob, spliceLines } from './metadata-blob.ts';
import { type HashJob, scan, type ScanOutput } from './scan.ts';
import { type Node, parseStatCache, readStatCache, saveStatCache, saveStatCacheUpdate, type StatCache, type StatCacheFile } from './stat-cache.ts';
import { type QuickJob, quickCompare, quickScan, quickTrees } from './quick-rescan.ts';
import { localPrefix, type StatCachePrefetch, startStatVerifier, type StatVerifier } from './stat-verify.ts';
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
  /** The stat cache as read at the command's start (prefetchStatCache); used when it still applies. */
  prefetch?: StatCachePrefetch;
  /** false: never the quick re-scan (tests compare it with the full scan). */
  quick?: boolean;
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
  /** Milliseconds per phase: load, scan, hash, write, commit. */
  phases: Record<string, number>;
  /**
   * How the files were looked at: quick (the stat cache's records, nothing but contents and
   * metadata changed), full (every path walked), dirty (the watcher's paths only).
   */
  route: 'quick' | 'full' | 'dirty';
  warnings: string[];
  /** Bytes added to the local repository. */
  bytesWritten: number;
  /** Files whose contents were read. */
  filesRead: number;
  /** Records a stat-verify worker thread checked (the second core's share of the lstat calls). */
  checkedByWorker: number;
}

export function summaryLine(s: Pick<ChangeSummary, 'added' | 'changed' | 'deleted' | 'metadataOnly'>): string {
  return `${s.added} added, ${s.changed} changed, ${s.deleted} deleted, ${s.metadataOnly} metadata-only`;
}

interface Previous {
  nodes: Map<string, Node>;
  cache: StatCache | null;
  tree: string | null;
  trusted: boolean;
  /** Checking the cached files' signatures on another core (full scans of large trees). */
  verifier?: StatVerifier | null;
}

function settingsKey(config: PachaConfig, roots: string[], ownersSig: string): string {
  const s = JSON.stringify([config.root, roots, config.ignore, config.maxFileSize, ownersSig]);
  return crypto.createHash('sha1').update(s).digest('hex');
}

/** The stat cache of HEAD, read once, and (for a full scan) the worker checking its records. */
interface CacheAtHead {
  /** null: no cache, or one for another commit. */
  file: StatCacheFile | null;
  /** Made with the same roots, ignore patterns, size limit and users: its lines are still right. */
  trusted: boolean;
  verifier: StatVerifier | null;
}

function openCacheAtHead(
  state: StatePaths,
  head: string | null,
  settings: string,
  log: Logger,
  /** Given for a full scan: check the cached records on another core when there are many. */
  verify?: { root: string; maxFileSize: number; prefetch?: StatCachePrefetch },
): CacheAtHead {
  const early = verify?.prefetch;
  const file = head === null ? null : early ? early.file : readStatCache(state.statCache);
  if (file === null || file.commit !== head) {
    early?.verifier?.stop();
    return { file: null, trusted: false, verifier: null };
  }
  const trusted = file.settings === settings;
  if (verify === undefined || !trusted) {
    early?.verifier?.stop();
    return { file, trusted, verifier: null };
  }
  const onError = (e: Error) => log.debug(`stat-verify worker: ${e.message}`);
  return { file, trusted, verifier: early ? early.verifier : startStatVerifier(file, localPrefix(verify.root), verify.maxFileSize, onError) };
}

/** What the last snapshot holds: from the stat cache when it describes HEAD, else from the commit. */
async function loadPrevious(state: StatePaths, head: string | null, at: CacheAtHead, log: Logger): Promise<Previous> {
  if (head === null) return { nodes: new Map(), cache: null, tree: null, trusted: false };
  if (at.file !== null) {
    const cache = parseStatCache(at.file);
    if (cache) return { nodes: cache.byPath, cache, tree: cache.tree, trusted: at.trusted, verifier: at.verifier };
    at.verifier?.stop();
  }
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

/** Why a file could not be read: gone, or a message for the warning. */
export type ReadFailure = { missing: true } | { missing: false; message: string };

/**
 * Read (hash, and store through `store`) the files a scan found changed. A file that changed size
 * while read is recorded as read; one that cannot be read is handed to `failed`.
 */
export async function readContents(
  jobs: HashJob[],
  log: Logger,
  store: (job: HashJob) => Promise<{ oid: string; size: number; bytesRead: number }>,
  failed: (job: HashJob, why: ReadFailure) => void,
): Promise<number> {
  let bytesRead = 0;
  let done = 0;
  for (const job of jobs) {
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
      failed(job, isMissing(e) ? { missing: true } : { missing: false, message: e instanceof FileChangedError ? 'it kept changing while read' : (e as Error).message });
    }
    if (++done % 500 === 0) log.progress(`reading files: ${done}/${jobs.length}`);
    // Small files are read synchronously, so this loop would never leave the microtask queue:
    // let the event loop turn now and then (timers, signals, the daemon's watcher events).
    if (done % 256 === 0) await new Promise<void>((resolve) => setImmediate(resolve));
  }
  if (jobs.length >= 500) log.progress('');
  return bytesRead;
}

/** What a full or dirty scan does with a file it cannot read: its previous version is kept. */
function keepPrevious(sc: ScanOutput, prev: Map<string, Node>): (job: HashJob, why: ReadFailure) => void {
  return (job, why) => {
    const rel = job.node.path;
    const p = prev.get(rel);
    if (why.missing) {
      sc.nodes.delete(rel);
    } else if (p) {
      sc.warnings.push(`cannot read /${rel}: ${why.message}; its previous version is kept`);
      sc.nodes.set(rel, p);
      sc.kept++;
    } else {
      sc.warnings.push(`cannot read /${rel}: ${why.message}; skipped`);
      sc.nodes.delete(rel);
    }
  };
}

/** The packs of one snapshot: files over STREAM_THRESHOLD get one of their own. */
class SnapshotPacks {
  readonly pack: PackWriter;
  private big: PackWriter | undefined;
  private readonly packDir: string;
  private readonly known: (oid: string) => boolean;
  /** The repository's objects as they were when the snapshot began. */
  readonly objects: ObjectStore;

  constructor(repo: string) {
    const objects = path.join(repo, 'objects');
    this.packDir = path.join(objects, 'pack');
    const store = new ObjectStore(objects);
    this.objects = store;
    this.known = (oid) => store.has(oid);
    this.pack = PackWriter.create(this.packDir, { known: this.known });
  }

  readonly store = (job: HashJob) => {
    if (job.entry.size <= STREAM_THRESHOLD) return this.pack.addBlobFromFile(job.local);
    this.big ??= PackWriter.create(this.packDir, { known: (oid) => this.known(oid) || this.pack.has(oid) });
    return this.big.addBlobFromFile(job.local);
  };

  readonly add = (type: ObjectType, data: Buffer) => this.pack.addObject(type, data);

  /** Bytes written. Large blobs first: the commit must never be visible before what it refers to. */
  async finish(): Promise<number> {
    const big = this.big ? await this.big.finish() : null;
    const small = await this.pack.finish();
    return (big?.bytes ?? 0) + (small?.bytes ?? 0);
  }

  abort(): void {
    this.pack.abort();
    this.big?.abort();
  }
}

/** Milliseconds per phase, each measured from the end of the one before. */
function phaseClock(): { phases: Record<string, number>; lap: (name: string) => void } {
  const phases: Record<string, number> = {};
  let t = performance.now();
  return {
    phases,
    lap: (name) => {
      const n = performance.now();
      phases[name] = Math.round((n - t) * 10) / 10;
      t = n;
    },
  };
}

/**
 * Commit `tree` and move the branch. The stat cache is saved (by `saveCache`, on the thread
 * pool) while the packs are completed: a cache is used only when HEAD names its commit, so if
 * the packs never land it is simply ignored.
 */
async function land(
  env: SnapshotEnv,
  packs: SnapshotPacks,
  head: string | null,
  tree: string,
  summary: ChangeSummary,
  note: string | undefined,
  saveCache: (commit: string) => Promise<void>,
  lap: (name: string) => void,
): Promise<{ commit: string; bytesWritten: number }> {
  const { config, state, log } = env;
  const now = Math.floor(Date.now() / 1000);
  const host = config.hostname;
  let message = summaryLine(summary) + '\n';
  if (note && note.trim() !== '') message += `\n${note.trim()}\n`;
  message += `\nPacha-Host: ${host}\n`;
  const commit = packs.pack.addObject('commit', serializeCommit({ tree, parent: head, author: `pacha <pacha@${host}>`, time: now, message }));
  const saving = saveCache(commit);
  const bytesWritten = await packs.finish();
  await saving;
  lap('write');
  updateHead(state.repo, commit);
  const merged = await consolidatePacks(state.repo);
  if (merged) log.debug(`merged ${merged.packs} packs into one (${merged.objects} objects)`);
  return { commit, bytesWritten };
}

export async function takeSnapshot(env: SnapshotEnv, opts: SnapshotOptions = {}): Promise<SnapshotResult> {
  const { config, state, log } = env;
  const clock = phaseClock();

  // A dirty scan starts from the cache in memory: a prefetch's worker has nothing to do for it.
  if (opts.dirty !== undefined) opts.prefetch?.verifier?.stop();
  const roots = effectiveRoots(config, state);
  // An empty watch list (never set, or its file lost) must not become a snapshot that records
  // every file as deleted: a rebuild from it would restore nothing.
  if (roots.length === 0) {
    opts.prefetch?.verifier?.stop();
    throw new UsageError('nothing is watched: add paths with `pacha watch PATH...` or pacha.watch in the config', 'pacha watched lists what is watched');
  }
  await initRepo(state.repo);
  const head = await readHead(state.repo);
  const owners = loadOwners(config.root);
  const settings = settingsKey(config, roots, owners.signature);
  const full = opts.dirty === undefined;
  const at = openCacheAtHead(state, head, settings, log, full ? { root: config.root, maxFileSize: config.maxFileSize, prefetch: opts.prefetch } : undefined);
  const racyNs = racyStamp(state);
  if (full && opts.quick !== false && head !== null && at.file !== null && at.trusted) {
    const quick = await quickSnapshot(env, opts, { head, file: at.file, verifier: at.verifier, roots, owners, racyNs, clock });
    if (quick !== null) return quick;
  }
  const prev = await loadPrevious(state, head, at, log);
  clock.lap('load');
  let sc: ScanOutput;
  let checkedByWorker = 0;
  try {
    sc = scan(
      { root: config.root, roots, ignore: config.ignore, maxFileSize: config.maxFileSize, prev: prev.cache, trusted: prev.trusted, owners, racyNs, dirty: opts.dirty, verified: prev.verifier?.state },
      (data) => hashObject('blob', data),
    );
    checkedByWorker = prev.verifier?.checked() ?? 0;
  } finally {
    prev.verifier?.stop();
  }
  clock.lap('scan');

  const packs = new SnapshotPacks(state.repo);
  try {
    for (const [oid, data] of sc.smallBlobs) packs.pack.addObject('blob', data, oid);
    const bytesRead = await readContents(sc.toHash, log, packs.store, keepPrevious(sc, prev.nodes));
    clock.lap('hash');

    const cmp = compareNodes(prev.nodes, sc.nodes, sc.fresh);
    const order = orderNodes(sc.nodes, prev.cache?.nodes, prev.nodes, sc.fresh, cmp);
    const metadata = metadataBlob(order);
    const rootRels = roots.filter((r) => r !== '/').map(treePath);
    // Added first: its deflate (on the thread pool) overlaps the tree work.
    const metadataId = packs.add('blob', metadata);
    const tree = buildTrees(sc.nodes, order, cmp.treeChanged, rootRels, { roots: Buffer.from(encodeRoots(roots)), metadataId }, packs.add);
    const summary: ChangeSummary = { added: cmp.added, changed: cmp.changed, deleted: cmp.deleted, metadataOnly: cmp.metadataOnly, total: sc.nodes.size, bytesRead };
    for (const w of sc.warnings) log.warn(w);

    let commit: string | null = null;
    let bytesWritten = 0;
    const saveCache = (described: string) => saveStatCache(state.statCache, { commit: described, tree, settings, nodes: order, metadata });
    if (tree === prev.tree || (head === null && sc.nodes.size === 0)) {
      packs.abort();
      clock.lap('write');
      if (head !== null) await saveCache(head);
    } else {
      ({ commit, bytesWritten } = await land(env, packs, head, tree, summary, opts.message, saveCache, clock.lap));
    }
    clock.lap('commit');
    const route = full ? 'full' : 'dirty';
    return { commit, parent: head, summary, phases: clock.phases, route, warnings: sc.warnings, bytesWritten, filesRead: sc.toHash.length, checkedByWorker };
  } catch (e) {
    packs.abort();
    throw e;
  }
}

/**
 * The full scan's fast path (quick-rescan.ts) for a trusted cache of HEAD: null when the full
 * scan must run instead (then nothing was written, and the verdicts reached so far stay in the
 * verifier's state for it).
 */
async function quickSnapshot(
  env: SnapshotEnv,
  opts: SnapshotOptions,
  c: { head: string; file: StatCacheFile; verifier: StatVerifier | null; roots: string[]; owners: Owners; racyNs: bigint; clock: ReturnType<typeof phaseClock> },
): Promise<SnapshotResult | null> {
  const { config, state, log } = env;
  const { clock, file, head } = c;
  clock.lap('load');
  const q = quickScan({ file, roots: c.roots, root: config.root, maxFileSize: config.maxFileSize, ignore: config.ignore, owners: c.owners, racyNs: c.racyNs, verified: c.verifier?.state });
  if (q === null) return null;
  const checkedByWorker = c.verifier?.checked() ?? 0;
  c.verifier?.stop();
  clock.lap('scan');

  const packs = new SnapshotPacks(state.repo);
  try {
    let gone = false;
    const unreadable = new Set<QuickJob>();
    const bytesRead = await readContents(q.jobs, log, packs.store, (job, why) => {
      if (why.missing) gone = true;
      else {
        // Its previous version is kept: the record stays as it is.
        q.warnings.push(`cannot read /${job.node.path}: ${why.message}; its previous version is kept`);
        unreadable.add(job as QuickJob);
      }
    });
    if (gone) {
      // A file vanished between its lstat and its read: a change of paths, for the full scan.
      packs.abort();
      return null;
    }
    clock.lap('hash');

    const outcome = quickCompare(q.rec, q.jobs.filter((j) => !unreadable.has(j)), q.dirs);
    const metadata = outcome.lines.length === 0 ? q.rec.text : spliceLines(q.rec.text, outcome.lines, q.rec.lineAt);
    const summary: ChangeSummary = { added: 0, changed: outcome.changed, deleted: 0, metadataOnly: outcome.metadataOnly, total: file.count, bytesRead };
    let commit: string | null = null;
    let bytesWritten = 0;
    if (outcome.changed === 0 && outcome.metadataOnly === 0) {
      packs.abort();
      for (const w of q.warnings) log.warn(w);
      clock.lap('write');
      // Nothing to commit; the records read again have new signatures worth keeping.
      if (outcome.updates.size > 0) await saveStatCacheUpdate(state.statCache, file, outcome.updates, { commit: head, tree: file.tree, metadata });
    } else {
      const rootRels = c.roots.filter((r) => r !== '/').map(treePath);
      // Added first: its deflate (on the thread pool) overlaps the tree work.
      const metadataId = packs.add('blob', metadata);
      // Reads the previous trees through the pack indexes the writer loaded already.
      const objects = new RepoObjects(state.repo, packs.objects.packs);
      let tree: string | null;
      try {
        tree = quickTrees(q.rec, outcome, rootRels, { roots: Buffer.from(encodeRoots(c.roots)), metadataId }, objects, packs.add);
      } finally {
        objects.close();
      }
      if (tree === null) {
        log.debug('quick re-scan: a tree is not what the stat cache says; scanning fully');
        packs.abort();
        return null;
      }
      for (const w of q.warnings) log.warn(w);
      const saveCache = (commit: string) => saveStatCacheUpdate(state.statCache, file, outcome.updates, { commit, tree, metadata });
      ({ commit, bytesWritten } = await land(env, packs, head, tree, summary, opts.message, saveCache, clock.lap));
    }
    clock.lap('commit');
    return { commit, parent: head, summary, phases: clock.phases, route: 'quick', warnings: q.warnings, bytesWritten, filesRead: q.jobs.length, checkedByWorker };
  } catch (e) {
    packs.abort();
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
  const at = openCacheAtHead(state, head, settingsKey(config, roots, owners.signature), log, { root: config.root, maxFileSize: config.maxFileSize });
  const prev = await loadPrevious(state, head, at, log);
  let sc: ScanOutput;
  try {
    sc = scan(
      { root: config.root, roots, ignore: config.ignore, maxFileSize: config.maxFileSize, prev: prev.cache, trusted: prev.trusted, owners, racyNs: 0n, verified: prev.verifier?.state },
      (data) => hashObject('blob', data),
    );
  } finally {
    prev.verifier?.stop();
  }
  await readContents(sc.toHash, log, async (job) => hashFile(job.local), keepPrevious(sc, prev.nodes));
  return { base: head, changes: describeChanges(prev.nodes, sc.nodes), warnings: sc.warnings };
}
