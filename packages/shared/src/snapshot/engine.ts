import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type { PachaConfig } from '../config.ts';
import type { Logger } from '../log.ts';
import type { StatePaths } from '../state.ts';
import { effectiveRoots } from '../watchlist.ts';
import { UsageError } from '../errors.ts';
import { treePath } from '../paths.ts';
import { hashObject, type ObjectType } from '../git/objects.ts';
import { serializeCommit } from '../git/commit.ts';
import { Repository, initRepo, readHead, updateHead } from '../git/repository.ts';
import { consolidatePacks } from '../git/consolidate.ts';
import type { PackIndexCache } from '../git/pack-index.ts';
import { FileChangedError, type FinishedPack, hashFile, PackWriter, STREAM_THRESHOLD } from '../git/pack-writer.ts';
import type { FilesRead } from '../git/deflate-worker.ts';
import { forgetFirstPacks, recordFirstPacks } from './first-packs.ts';
import { encodeFields } from '../format/entry.ts';
import { type ChangeCounts, checkExtraName, encodeRoots, FORMAT_NAME, FORMAT_VERSION, METADATA_V1_NAME, PACHA_DIR, readSnapshotTree, ROOTS_NAME, snapshotMessage, TOP_METADATA_NAME, type TreeSource } from '../format/snapshot.ts';
import { compareNodes, describeChanges, orderNodes, type PathChange } from './changes.ts';
import { loadOwners } from './owners.ts';
import { XattrReader } from '../xattr/xattr.ts';
import { type HashJob, scan, type ScanOutput } from './scan.ts';
import { type CacheChange, loadStatCache, type Node, persistStatCache, type StatCache } from './stat-cache.ts';
import { type NodeMap, nodesAsMap } from './node-map.ts';
import { buildTrees } from './tree-builder.ts';
import { snapshotHostFiles } from '../host/snapshot-files.ts';

// One snapshot: scan the roots, read what changed, write one pack (large files in a pack of
// their own so that reading commits never loads them), build trees, commit, move the branch.
// The caller holds the pid lock (the `snapshot` command and the daemon take it).

export interface SnapshotEnv {
  config: PachaConfig;
  state: StatePaths;
  log: Logger;
  /** Kept by a long-lived caller (the daemon) between its snapshots. */
  memory?: SnapshotMemory;
}

/** What a long-lived caller (the daemon) keeps from one snapshot to the next. */
export interface SnapshotMemory {
  /**
   * The stat cache of the last snapshot, so that the next one neither reads nor parses the
   * file. Taken out while a snapshot runs (a failed one leaves none: the next reads the file,
   * which is never ahead of the repository) and put back when it succeeds.
   */
  cache: StatCache | null;
  /** The repository's pack indexes, loaded once. */
  indexes?: PackIndexCache;
  /**
   * false: deflate on this thread only, even for a large snapshot. A process that mostly waits
   * (the daemon) favours its memory over the speed of its first snapshot: the deflate thread's
   * memory is not all given back after it ends.
   */
  deflateThread?: boolean;
}

export interface SnapshotOptions {
  message?: string;
  /** Host paths the watcher saw change since the last snapshot; undefined = full reconcile scan. */
  dirty?: string[];
  /**
   * Generated files for the snapshot's .pacha/ directory by name (a package manifest, the
   * accounts); null removes one. Names not given are carried over from the previous snapshot.
   */
  extraFiles?: ReadonlyMap<string, Buffer | null>;
}

export interface ChangeSummary extends ChangeCounts {
  /** Paths in the snapshot. */
  total: number;
  bytesRead: number;
}

export interface SnapshotResult {
  /** null when nothing changed (no empty commits). */
  commit: string | null;
  parent: string | null;
  summary: ChangeSummary;
  /** Milliseconds per phase: load, scan, hash, trees, write, commit. */
  phases: Record<string, number>;
  /** How the files were looked at: full (every root walked), dirty (the watcher's paths only). */
  route: 'full' | 'dirty';
  warnings: string[];
  /** Bytes added to the local repository. */
  bytesWritten: number;
  /** Files whose contents were read. */
  filesRead: number;
}

interface Previous {
  nodes: Map<string, Node>;
  cache: StatCache | null;
  tree: string | null;
  /** The cache was made with the same settings: its listings and records still apply. */
  trusted: boolean;
  /** Format version of the previous snapshot (FORMAT_VERSION when there is none). */
  version: number;
}

// xattrs: whether attributes can be read at all (koffi.node found); a cache made without them
// would keep records that lack them.
function settingsKey(config: PachaConfig, roots: string[], ownersSig: string, xattrs: XattrReader): string {
  const s = JSON.stringify([FORMAT_VERSION, config.root, roots, config.ignore, config.maxFileSize, ownersSig, xattrs.available]);
  return crypto.createHash('sha1').update(s).digest('hex');
}

/** Objects of the local repository as the format module reads them. */
function treeSource(objects: Repository): TreeSource {
  return {
    readTree: (oid) => objects.readTree(oid),
    readBlob: (oid) => objects.readBlob(oid),
  };
}

/**
 * What the last snapshot holds: from the stat cache when it describes HEAD (the one in memory,
 * else the file), else from the commit.
 */
function loadPrevious(state: StatePaths, head: string | null, settings: string, log: Logger, memory?: SnapshotMemory): Previous {
  const kept = memory?.cache ?? null;
  if (memory) memory.cache = null;
  if (head === null) return { nodes: new Map(), cache: null, tree: null, trusted: false, version: FORMAT_VERSION };
  const cache = kept !== null && kept.commit === head ? kept : loadStatCache(state.statCache);
  if (cache !== null && cache.commit === head) return { nodes: cache.byPath, cache, tree: cache.tree, trusted: cache.settings === settings, version: FORMAT_VERSION };
  log.debug(`stat cache does not describe ${head.slice(0, 12)}: reading the snapshot instead`);
  const objects = new Repository(state.repo);
  try {
    const rootTree = objects.readCommit(head).tree;
    const snap = readSnapshotTree(treeSource(objects), rootTree);
    const nodes = new Map<string, Node>();
    const order: Node[] = [];
    for (const e of snap.entries) {
      const item = snap.tree.get(e.path);
      // Format 1 kept no tree for an empty directory and no metadata in the trees: build them all again.
      const oid = snap.version < 2 && e.type === 'dir' ? '' : (item?.oid ?? '');
      const n: Node = { path: e.path, type: e.type, line: encodeFields(e), sig: null, oid };
      nodes.set(e.path, n);
      order.push(n);
    }
    return { nodes, cache: { commit: head, tree: rootTree, settings: '', nodes: order, byPath: nodes }, tree: rootTree, trusted: false, version: snap.version };
  } finally {
    objects.close();
  }
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

/** How often the reading loop lets the event loop turn while files are read alongside. */
const ALONGSIDE_TURN_MS = 2;

/**
 * Read (hash, and store through `store`) the files a scan found changed. A file that changed size
 * while read is recorded as read; one that cannot be read is handed to `failed`. The jobs
 * `alongside` picks are read one after another on a chain of their own while the loop goes on
 * with the others: large files, whose deflate runs on the thread pool while the small files are
 * read (each chain in job order, so what is written stays in a fixed order).
 */
export async function readContents(
  jobs: HashJob[],
  log: Logger,
  store: (job: HashJob) => Promise<{ oid: string; size: number; bytesRead: number }>,
  failed: (job: HashJob, why: ReadFailure) => void,
  alongside?: (job: HashJob) => boolean,
): Promise<number> {
  let bytesRead = 0;
  let done = 0;
  const readOne = async (job: HashJob): Promise<void> => {
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
        job.node.line = encodeFields(job.entry);
        job.node.sig = null;
      }
    } catch (e) {
      bytesRead += (e as { bytesRead?: number }).bytesRead ?? 0;
      failed(job, isMissing(e) ? { missing: true } : { missing: false, message: e instanceof FileChangedError ? 'it kept changing while read' : (e as Error).message });
    }
    if (++done % 500 === 0) log.progress(`reading files: ${done}/${jobs.length}`);
  };
  let chain: Promise<void> | undefined;
  let turned = performance.now();
  let sinceTurn = 0;
  for (const job of jobs) {
    if (alongside?.(job)) {
      chain = (chain ?? Promise.resolve()).then(() => readOne(job));
      continue;
    }
    await readOne(job);
    // Small files are read synchronously, so this loop would never leave the microtask queue:
    // let the event loop turn now and then (timers, signals, the daemon's watcher events), and
    // often while the chain runs (its deflate's callbacks come through the event loop).
    if (++sinceTurn >= 256 || (chain !== undefined && performance.now() - turned >= ALONGSIDE_TURN_MS)) {
      await new Promise<void>((resolve) => setImmediate(resolve));
      turned = performance.now();
      sinceTurn = 0;
    }
  }
  await chain;
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

/**
 * Bytes to read from files that go whole into the snapshot's pack, from which its objects are
 * deflated on a worker thread (PackWriter's worker option): below, the worker's start costs more
 * than the overlap saves.
 */
const WORKER_DEFLATE_BYTES = 8 * 1024 * 1024;
/** Bytes (by the scan's sizes) and files of one batch of small files read on a worker. */
const READ_BATCH_BYTES = 1024 * 1024;
const READ_BATCH_FILES = 512;
/**
 * Bytes of small files given to the workers ahead of the one being written: their deflated
 * output is held until it is written. Enough to keep the workers busy while the scan goes on
 * (on /usr/share they read some 100 MB in the time of its scan; 32 MiB left them idle).
 */
const READ_AHEAD_BYTES = 96 * 1024 * 1024;

/** A small file read ahead on a worker: its batch and its place in it. */
interface ReadAhead {
  batch: Promise<FilesRead>;
  k: number;
}

/** The packs of one snapshot: files over STREAM_THRESHOLD get one of their own. */
class SnapshotPacks {
  readonly pack: PackWriter;
  private big: PackWriter | undefined;
  private readonly packDir: string;
  private readonly known: (oid: string) => boolean;
  /** The repository's objects as they were when the snapshot began. */
  readonly objects: Repository;
  /** Objects not written because the repository had them already. */
  private knownHits = 0;
  /** The packs written, once finished. */
  readonly finished: FinishedPack[] = [];
  /** The files that go whole into the pack, in the order they are stored, and the next to give a worker. */
  private readonly small: HashJob[] = [];
  private whole = 0;
  private cursor = 0;
  private readonly ahead = new Map<HashJob, ReadAhead>();
  private bytesAhead = 0;
  private scanned = false;
  private readonly deflateThread: boolean;

  /** Started before the scan, which tells it of each file to read (found). */
  constructor(repo: string, indexes: PackIndexCache | undefined, deflateThread: boolean) {
    this.packDir = path.join(repo, 'objects', 'pack');
    const store = new Repository(repo, indexes);
    this.objects = store;
    this.known = (oid) => {
      const k = store.has(oid);
      if (k) this.knownHits++;
      return k;
    };
    this.deflateThread = deflateThread;
    this.pack = PackWriter.create(this.packDir, { known: this.known });
  }

  /**
   * A file the scan found to read. Once there are WORKER_DEFLATE_BYTES of small files the
   * workers start and read them while the scan goes on.
   */
  readonly found = (job: HashJob): void => {
    if (job.entry.size > STREAM_THRESHOLD) return;
    this.small.push(job);
    this.whole += job.entry.size;
    if (this.deflateThread && this.whole >= WORKER_DEFLATE_BYTES && !this.pack.readsOnWorkers) this.pack.startWorkers();
    if (this.pack.readsOnWorkers) this.readAhead();
  };

  readonly store = async (job: HashJob): Promise<{ oid: string; size: number; bytesRead: number }> => {
    if (job.entry.size > STREAM_THRESHOLD) {
      this.big ??= PackWriter.create(this.packDir, { known: (oid) => this.known(oid) || this.pack.has(oid) });
      return this.big.addBlobFromFile(job.local);
    }
    const a = this.ahead.get(job);
    if (a !== undefined) {
      this.ahead.delete(job);
      this.bytesAhead -= job.entry.size;
      this.readAhead();
      const r = await a.batch.catch(() => null);
      const stream = r?.streams[a.k];
      if (r && stream) {
        const oid = r.oids[a.k];
        await this.pack.addRead(oid, r.sizes[a.k], stream);
        return { oid, size: r.sizes[a.k], bytesRead: r.sizes[a.k] };
      }
    }
    // Not read ahead, or not as it was (changed, gone, unreadable): here, with the writer's rules.
    return this.pack.addBlobFromFile(job.local);
  };

  /** Give the workers the next batches of small files, up to READ_AHEAD_BYTES not yet written. */
  private readAhead(): void {
    while (this.bytesAhead < READ_AHEAD_BYTES && this.cursor < this.small.length) {
      const jobs: HashJob[] = [];
      let bytes = 0;
      while (this.cursor < this.small.length && jobs.length < READ_BATCH_FILES && bytes < READ_BATCH_BYTES) {
        const job = this.small[this.cursor++];
        jobs.push(job);
        bytes += job.entry.size;
      }
      // During the scan only whole batches: the last files found wait for more.
      if (bytes < READ_BATCH_BYTES && jobs.length < READ_BATCH_FILES && !this.scanned) {
        this.cursor -= jobs.length;
        return;
      }
      const batch = this.pack.readFiles(jobs.map((j) => j.local));
      batch.catch(() => undefined); // a batch never taken (the snapshot failed) is not an error of its own
      jobs.forEach((job, k) => this.ahead.set(job, { batch, k }));
      this.bytesAhead += bytes;
    }
  }

  /** The scan is over: what is left of the files found may go in batches smaller than a whole one. */
  scanDone(): void {
    this.scanned = true;
    if (this.pack.readsOnWorkers) this.readAhead();
  }

  readonly add = (type: ObjectType, data: Buffer) => this.pack.addObject(type, data);

  /** Bytes written. Large blobs first: the commit must never be visible before what it refers to. */
  async finish(): Promise<number> {
    const big = this.big ? await this.big.finish() : null;
    const small = await this.pack.finish();
    for (const p of [big, small]) if (p !== null) this.finished.push(p);
    return (big?.bytes ?? 0) + (small?.bytes ?? 0);
  }

  /** Every object added was written here: none was in the repository already. */
  get wroteAll(): boolean {
    return this.knownHits === 0;
  }

  abort(): void {
    this.pack.abort();
    this.big?.abort();
  }
}

/** The journal line of a snapshot (stat-cache.ts): the nodes it made or changed, the paths it removed. */
function cacheChange(parent: string | null, nodes: NodeMap, made: Node[], touched: string[]): CacheChange {
  const set = new Set<Node>();
  for (const n of made) if (nodes.get(n.path) === n) set.add(n);
  return { parent: parent ?? '', set: [...set], deleted: touched.filter((p) => !nodes.has(p)) };
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
 * Commit `tree` and move the branch, then save the stat cache. The cache is written after the
 * fsyncs, not alongside them: on ext4 (data=ordered) a journal commit forced by an fsync must
 * first write out every data block allocated in it, and the cache is by far the largest file a
 * small snapshot writes. A cache is used only when HEAD names its commit, so a crash before it
 * is saved leaves the old one, which is simply ignored.
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
  const message = snapshotMessage(summary, host, note);
  const commit = packs.pack.addObject('commit', serializeCommit({ tree, parent: head, author: `pacha <pacha@${host}>`, time: now, message }));
  const bytesWritten = await packs.finish();
  updateHead(state.repo, commit);
  // A first snapshot's packs are its commit's objects, no more and no less (first-packs.ts).
  if (head === null && packs.wroteAll) recordFirstPacks(state, commit, packs.finished);
  else if (head !== null && packs.finished.length > 0) forgetFirstPacks(state);
  await saveCache(commit);
  lap('write');
  const merged = await consolidatePacks(state.repo);
  if (merged) log.debug(`merged ${merged.packs} packs into one (${merged.objects} objects)`);
  return { commit, bytesWritten };
}

/**
 * The generated files of the new snapshot's .pacha/ (by name -> blob id): the previous
 * snapshot's (prevTree: its root tree, as the stat cache or its commit gave it), with the
 * caller's added, replaced or (null) removed.
 */
function extraFiles(packs: SnapshotPacks, prevTree: string | null, given: ReadonlyMap<string, Buffer | null> | undefined): Map<string, string> {
  const out = new Map<string, string>();
  if (prevTree !== null) {
    // Reads the previous trees through the pack indexes the writer loaded already.
    const objects = packs.objects;
    try {
      const pacha = objects.readTree(prevTree).find((e) => e.name === PACHA_DIR);
      const own = new Set([FORMAT_NAME, ROOTS_NAME, METADATA_V1_NAME, TOP_METADATA_NAME]);
      if (pacha !== undefined) for (const f of objects.readTree(pacha.oid)) if (!own.has(f.name) && f.mode !== '40000') out.set(f.name, f.oid);
    } finally {
      objects.close();
    }
  }
  for (const [name, content] of given ?? []) {
    checkExtraName(name);
    if (content === null) out.delete(name);
    else out.set(name, packs.add('blob', content));
  }
  return out;
}

export async function takeSnapshot(env: SnapshotEnv, opts: SnapshotOptions = {}): Promise<SnapshotResult> {
  const { config, state, log } = env;
  const clock = phaseClock();
  const roots = effectiveRoots(config, state);
  // An empty watch list (never set, or its file lost) must not become a snapshot that records
  // every file as deleted: a rebuild from it would restore nothing.
  if (roots.length === 0) {
    throw new UsageError('nothing is watched: add paths with `pacha watch PATH...` or pacha.watch in the config', 'pacha watched lists what is watched');
  }
  initRepo(state.repo);
  const head = readHead(state.repo);
  const owners = loadOwners(config.root);
  const xattrs = new XattrReader();
  const settings = settingsKey(config, roots, owners.signature, xattrs);
  const racyNs = racyStamp(state);
  const prev = loadPrevious(state, head, settings, log, env.memory);
  clock.lap('load');
  const packs = new SnapshotPacks(state.repo, env.memory?.indexes, env.memory?.deflateThread ?? true);
  try {
    const sc = scan(
      { root: config.root, roots, ignore: config.ignore, maxFileSize: config.maxFileSize, prev: prev.cache, trusted: prev.trusted, owners, racyNs, dirty: opts.dirty, xattrs, onRead: packs.found },
      (data) => hashObject('blob', data),
    );
    packs.scanDone();
    sc.warnings.push(...xattrs.warnings.messages());
    clock.lap('scan');

    for (const [oid, data] of sc.smallBlobs) packs.pack.addObject('blob', data, oid);
    const bytesRead = await readContents(sc.toHash, log, packs.store, keepPrevious(sc, prev.nodes), (job) => job.entry.size > STREAM_THRESHOLD);
    clock.lap('hash');

    const cmp = compareNodes(prev.nodes, sc.nodes, sc.fresh);
    // The previous cache is spent once this snapshot is taken (or failed): its order is reused.
    const order = orderNodes(sc.nodes, prev.cache?.nodes, prev.nodes, sc.fresh, cmp, true);
    const rootRels = roots.filter((r) => r !== '/').map(treePath);
    const migrating = head !== null && prev.version < FORMAT_VERSION;
    // The package manifest and the accounts (host/snapshot-files.ts): a package installed is a change too.
    const host = snapshotHostFiles({ config, stateDir: state.dir, log }, { prevTree: prev.tree, prevNodes: prev.nodes, nodes: sc.nodes, touched: cmp.touched, head });
    const pacha = { roots: Buffer.from(encodeRoots(roots)), extra: extraFiles(packs, prev.tree, new Map([...host.files, ...(opts.extraFiles ?? [])])) };
    const { tree, rebuilt } = buildTrees(sc.nodes, order, cmp.touched, rootRels, pacha, packs.add, migrating);
    host.done(tree);
    clock.lap('trees');
    const summary: ChangeSummary = { added: cmp.added, changed: cmp.changed, deleted: cmp.deleted, metadataOnly: cmp.metadataOnly, total: sc.nodes.size, bytesRead };
    for (const w of sc.warnings) log.warn(w);

    let commit: string | null = null;
    let bytesWritten = 0;
    let next: StatCache | null = null;
    let wroteWhole = false;
    const saveCache = async (described: string) => {
      next = { commit: described, tree, settings, nodes: order, byPath: new Map() };
      next.saved = await persistStatCache(state.statCache, prev.cache, next, cacheChange(head, sc.nodes, [...sc.fresh, ...rebuilt], cmp.touched));
      wroteWhole = next.saved.journalBytes === 0;
    };
    if (tree === prev.tree || (head === null && sc.nodes.size === 0)) {
      packs.abort();
      clock.lap('write');
      // The cache is written again only when it learnt something (a record made anew: a new
      // signature, or one no longer racy); a trusted cache of HEAD with no new node is as it was.
      if (head !== null && (sc.fresh.length > 0 || !prev.trusted || cmp.touched.length > 0)) await saveCache(head);
      else if (head !== null && prev.cache !== null) next = { ...prev.cache, tree, nodes: order, byPath: new Map() };
    } else {
      const note = [opts.message?.trim(), host.note(packs.objects), migrating ? `snapshot format ${prev.version} -> ${FORMAT_VERSION}` : undefined].filter((x) => x).join('\n\n');
      ({ commit, bytesWritten } = await land(env, packs, head, tree, summary, note, saveCache, clock.lap));
    }
    clock.lap('commit');
    // The nodes become the next snapshot's (the previous cache's Map is changed into them). After
    // the cache was written whole (a first or a large snapshot) its nodes are objects of their
    // own, several times the size of the file's records: the file just written is read instead,
    // now rather than on the next change.
    if (env.memory && next !== null) env.memory.cache = wroteWhole ? loadStatCache(state.statCache) : { ...(next as StatCache), byPath: nodesAsMap(sc.nodes) };
    const route = opts.dirty === undefined ? 'full' : 'dirty';
    return { commit, parent: head, summary, phases: clock.phases, route, warnings: sc.warnings, bytesWritten, filesRead: sc.toHash.length };
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
  const head = readHead(state.repo);
  const owners = loadOwners(config.root);
  const xattrs = new XattrReader();
  const prev = loadPrevious(state, head, settingsKey(config, roots, owners.signature, xattrs), log);
  const sc = scan(
    { root: config.root, roots, ignore: config.ignore, maxFileSize: config.maxFileSize, prev: prev.cache, trusted: prev.trusted, owners, racyNs: 0n, xattrs },
    (data) => hashObject('blob', data),
  );
  sc.warnings.push(...xattrs.warnings.messages());
  await readContents(sc.toHash, log, async (job) => hashFile(job.local), keepPrevious(sc, prev.nodes));
  return { base: head, changes: describeChanges(prev.nodes, sc.nodes), warnings: sc.warnings };
}
