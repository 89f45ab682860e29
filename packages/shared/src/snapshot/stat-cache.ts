import { isAscii } from 'node:buffer';
import fs from 'node:fs';
import { type EntryType, lowerBoundPath } from '../format/entry.ts';
import { orderNodes } from './changes.ts';

// The stat cache: what the last snapshot knew about every path, so that a re-snapshot of an
// unchanged file reads no content. Per path, in path byte order: its metadata record (the
// fields after the name, format/entry.ts encodeFields), its stat signature (dev, ino, size,
// mtime, ctime; absent when it cannot be trusted because the entry was modified within the
// clock tick of the snapshot, "racily clean" in git's words) and its object id (blob of a file
// or symlink, tree of a directory). The header names the commit it describes; a cache for
// another commit is ignored.
//
// It is binary so that 100,000 paths load in a few tens of milliseconds and take little memory:
//   header line  "pacha-statcache 4\t<commit>\t<tree>\t<settings>\t<count>\t<path bytes>\t<text bytes>\n"
//   paths        every real path followed by a NUL byte (a path cannot hold one)
//   text         the records, each ending in \n, then 0-7 zero bytes up to a multiple of 8
//   sigs         count x 5 float64: dev, ino, size, mtimeMs, ctimeMs as a plain fs.Stats has them
//   lineAt       count x u32: where each record starts in text
//   pathAt       count x u32: where each record's path starts in paths
//   oids         count x 20 bytes
//   flags        count x 1 byte: type (bits 0-1), signature valid (4), object id present (8)
//   "END\n"
// Numbers are in the machine's byte order: the file never leaves the host that wrote it.
//
// A snapshot that changes a few paths does not write the whole file again: it appends what
// changed to `<cache>.journal`, one JSON line per snapshot
//   {"parent":<commit before>,"commit":<commit>,"tree":..,"settings":..,"set":[[path,type,record,sig,oid],..],"del":[path,..]}
// (sig is [dev, ino, size, mtimeMs, ctimeMs] or null). Loading replays the lines whose parents
// chain from the file's commit and stops at the first that does not (torn, or of an older file).
// The whole file is written again, and the journal removed first, once the journal has grown
// to an eighth of it (JOURNAL_SHARE) or when the previous cache is not the one on disk.

/** A stat signature in the numbers of a plain (non-bigint) fs.Stats. */
export interface Sig {
  dev: number;
  ino: number;
  size: number;
  mtimeMs: number;
  ctimeMs: number;
}

export interface Node {
  /** Host path without the leading slash, real name. */
  path: string;
  type: EntryType;
  /** The record's fields (format/entry.ts encodeFields). */
  line: string;
  /** null: not to be trusted (racily clean, or never known). */
  sig: Sig | null;
  oid: string;
}

export interface StatCache {
  commit: string;
  tree: string;
  /** Roots, ignore patterns, size limit, passwd/group: listings and lines are reused only when equal. */
  settings: string;
  /** In path byte order. */
  nodes: Node[];
  byPath: Map<string, Node>;
  /** The files on disk hold exactly this cache (set by loading and saving); undefined: they may not. */
  saved?: CacheOnDisk;
}

/** Sizes of the cache file and of its journal as last read or written. */
export interface CacheOnDisk {
  baseBytes: number;
  journalBytes: number;
}

/** The journal is replayed after the file it extends. */
export function journalOf(file: string): string {
  return `${file}.journal`;
}

/** The journal may grow to 1/JOURNAL_SHARE of the cache file (at least JOURNAL_MIN bytes) before the file is written whole. */
const JOURNAL_SHARE = 8;
const JOURNAL_MIN = 64 * 1024;

const MAGIC = 'pacha-statcache 4';
const END = Buffer.from('END\n');
const SIG = 5;
const OID = 20;
const TYPES: EntryType[] = ['file', 'dir', 'symlink'];
const TYPE_MASK = 3;
const SIG_VALID = 4;
const HAS_OID = 8;

/** The sections of one loaded cache file, shared by its nodes. */
interface Records {
  count: number;
  paths: Buffer;
  text: Buffer;
  sigs: Float64Array;
  lineAt: Uint32Array;
  pathAt: Uint32Array;
  oids: Buffer;
  flags: Buffer;
}

/** Node computes mtimeMs as sec * 1e3 + nsec / 1e6 from the same numbers; so do we. */
function msOfNs(ns: bigint): number {
  return Number(ns / 1_000_000_000n) * 1000 + Number(ns % 1_000_000_000n) / 1e6;
}

/**
 * The signature of a bigint lstat, in the numbers a plain lstat of the same state gives; null
 * for a time before 1970 (a plain fs.Stats cannot be compared exactly then).
 */
export function sigOf(st: fs.BigIntStats): Sig | null {
  if (st.mtimeNs < 0n || st.ctimeNs < 0n) return null;
  return { dev: Number(st.dev), ino: Number(st.ino), size: Number(st.size), mtimeMs: msOfNs(st.mtimeNs), ctimeMs: msOfNs(st.ctimeNs) };
}

/**
 * A node loaded from a cache file. Record, signature and object id are read from the file's
 * sections only when something asks (most paths are compared through sameStat() and never need them).
 */
class CachedNode implements Node {
  path: string;
  type: EntryType;
  readonly rec: Records;
  readonly i: number;
  private lineSet: string | undefined;
  private sigSet: Sig | null | undefined;
  private oidSet: string | undefined;

  constructor(path: string, type: EntryType, rec: Records, i: number) {
    this.path = path;
    this.type = type;
    this.rec = rec;
    this.i = i;
  }

  get line(): string {
    if (this.lineSet !== undefined) return this.lineSet;
    const { rec, i } = this;
    const end = i + 1 < rec.count ? rec.lineAt[i + 1] : rec.text.length;
    return rec.text.toString('utf8', rec.lineAt[i], end - 1);
  }

  set line(v: string) {
    this.lineSet = v;
  }

  get sig(): Sig | null {
    if (this.sigSet !== undefined) return this.sigSet;
    if ((this.rec.flags[this.i] & SIG_VALID) === 0) return null;
    const q = this.rec.sigs;
    const o = this.i * SIG;
    return { dev: q[o], ino: q[o + 1], size: q[o + 2], mtimeMs: q[o + 3], ctimeMs: q[o + 4] };
  }

  set sig(v: Sig | null) {
    this.sigSet = v;
  }

  get oid(): string {
    if (this.oidSet !== undefined) return this.oidSet;
    const { rec, i } = this;
    return (rec.flags[i] & HAS_OID) === 0 ? '' : rec.oids.toString('hex', i * OID, i * OID + OID);
  }

  set oid(v: string) {
    this.oidSet = v;
  }

  /** Record, signature and object id all as loaded: the record can be copied as it is. */
  get pristine(): boolean {
    return this.lineSet === undefined && this.sigSet === undefined && this.oidSet === undefined;
  }

  get pristineSig(): boolean {
    return this.sigSet === undefined;
  }
}

/**
 * The rule "unchanged since the snapshot": a plain lstat has the signature the node was stored
 * with (size, mtime, ctime, inode, device; restic's and git's test). Sound because a signature
 * is stored only when the entry had not changed within the clock tick of its snapshot.
 */
export function sameStat(n: Node, st: fs.Stats): boolean {
  if (n instanceof CachedNode && n.pristineSig) {
    const { rec, i } = n;
    if ((rec.flags[i] & SIG_VALID) === 0) return false;
    const q = rec.sigs;
    const o = i * SIG;
    return st.mtimeMs === q[o + 3] && st.ctimeMs === q[o + 4] && st.size === q[o + 2] && st.ino === q[o + 1] && st.dev === q[o];
  }
  const s = n.sig;
  return s !== null && st.mtimeMs === s.mtimeMs && st.ctimeMs === s.ctimeMs && st.size === s.size && st.ino === s.ino && st.dev === s.dev;
}

/**
 * Load the cache and replay its journal; null when the file is missing, torn or of another
 * format. A journal line that does not follow (torn, or left from an older file) ends the replay.
 */
export function loadStatCache(file: string): StatCache | null {
  const base = loadBase(file);
  if (base === null) return null;
  let journal: Buffer;
  try {
    journal = fs.readFileSync(journalOf(file));
  } catch {
    return base; // no journal: the file is the whole cache
  }
  return replayJournal(base, journal);
}

type JournalRecord = [path: string, type: number, line: string, sig: number[] | null, oid: string];

interface JournalEntry {
  parent: string;
  commit: string;
  tree: string;
  settings: string;
  set: JournalRecord[];
  del: string[];
}

function parseEntry(line: string): JournalEntry | null {
  try {
    const e = JSON.parse(line) as JournalEntry;
    const ok =
      typeof e === 'object' && e !== null && typeof e.parent === 'string' && typeof e.commit === 'string' && typeof e.tree === 'string' &&
      typeof e.settings === 'string' && Array.isArray(e.set) && Array.isArray(e.del) &&
      e.set.every((r) => Array.isArray(r) && typeof r[0] === 'string' && TYPES[r[1]] !== undefined && typeof r[2] === 'string' &&
        (r[3] === null || (Array.isArray(r[3]) && r[3].length === SIG && r[3].every((x) => typeof x === 'number'))) && typeof r[4] === 'string') &&
      e.del.every((p) => typeof p === 'string');
    return ok ? e : null;
  } catch {
    return null;
  }
}

function replayJournal(base: StatCache, journal: Buffer): StatCache {
  if (journal.length === 0) return base;
  const byPath = base.byPath;
  /** Paths the file does not have, with their nodes. */
  const added = new Map<string, Node>();
  /** Paths of the file deleted by the journal (so far). */
  const removed = new Set<string>();
  /** Paths the journal set. */
  const replaced = new Set<string>();
  let { commit, tree, settings } = base;
  let at = 0;
  while (at < journal.length) {
    const nl = journal.indexOf(10, at);
    if (nl < 0) break;
    const e = parseEntry(journal.toString('utf8', at, nl));
    if (e === null || e.parent !== commit) break;
    for (const [path, type, line, sig, oid] of e.set) {
      const n: Node = { path, type: TYPES[type], line, sig: sig === null ? null : { dev: sig[0], ino: sig[1], size: sig[2], mtimeMs: sig[3], ctimeMs: sig[4] }, oid };
      if (added.has(path) || (!byPath.has(path) && !removed.has(path))) added.set(path, n);
      removed.delete(path);
      replaced.add(path);
      byPath.set(path, n);
    }
    for (const path of e.del) {
      if (!byPath.delete(path)) continue;
      if (!added.delete(path)) removed.add(path);
    }
    ({ commit, tree, settings } = e);
    at = nl + 1;
  }
  if (at === 0) return { ...base, saved: undefined };
  const deleted = removed.size > 0;
  // The new paths merged into the file's order, the replaced nodes in their places.
  let nodes: Node[];
  if (deleted || added.size > 0) nodes = orderNodes(byPath, base.nodes, new Map(), [...added.values()]);
  else {
    // The file's paths, the nodes the journal set put in their places (found by path, not by
    // asking the Map for every path).
    nodes = base.nodes;
    for (const path of replaced) {
      const i = lowerBoundPath(nodes.length, (k) => nodes[k].path, path);
      // (A path the journal added and then deleted is not among them.)
      if (nodes[i]?.path === path) nodes[i] = byPath.get(path)!;
    }
  }
  // Bytes after the last line replayed (torn, or not following): the next save writes the file whole.
  const saved = at === journal.length && base.saved ? { baseBytes: base.saved.baseBytes, journalBytes: at } : undefined;
  return { commit, tree, settings, nodes, byPath, saved };
}

/** What one snapshot changed in the cache it started from (parent): the journal's line for it. */
export interface CacheChange {
  parent: string;
  /** Nodes made or modified by the snapshot (now in the new cache). */
  set: Node[];
  /** Paths the new cache no longer has. */
  deleted: string[];
}

/**
 * Persist `next`: as a journal line when `prev` is what the files on disk hold and the journal
 * is still small, else the whole file. Returns where the files on disk now stand.
 */
export async function persistStatCache(file: string, prev: StatCache | null, next: StatCache, change: CacheChange): Promise<CacheOnDisk> {
  const saved = prev?.saved;
  if (saved !== undefined && prev!.commit === change.parent && saved.journalBytes < Math.max(JOURNAL_MIN, saved.baseBytes / JOURNAL_SHARE)) {
    const entry: JournalEntry = {
      parent: change.parent,
      commit: next.commit,
      tree: next.tree,
      settings: next.settings,
      set: change.set.map((n) => {
        const s = n.sig;
        return [n.path, TYPES.indexOf(n.type), n.line, s === null ? null : [s.dev, s.ino, s.size, s.mtimeMs, s.ctimeMs], n.oid];
      }),
      del: change.deleted,
    };
    const line = Buffer.from(JSON.stringify(entry) + '\n');
    await fs.promises.appendFile(journalOf(file), line, { mode: 0o600 });
    return { baseBytes: saved.baseBytes, journalBytes: saved.journalBytes + line.length };
  }
  return saveStatCache(file, next);
}

/** The cache file alone (its journal not replayed). */
function loadBase(file: string): StatCache | null {
  let buf: Buffer;
  try {
    buf = fs.readFileSync(file);
  } catch {
    return null; // no cache (or none readable): the snapshot reads the previous commit instead
  }
  const nl = buf.indexOf(10);
  if (nl < 0) return null;
  const head = buf.toString('utf8', 0, nl).split('\t');
  if (head[0] !== MAGIC || head.length !== 7) return null;
  const [count, pathsLen, textLen] = head.slice(4).map(Number);
  if (![count, pathsLen, textLen].every((n) => Number.isSafeInteger(n) && n >= 0)) return null;
  const pathsAt = nl + 1;
  const textAt = pathsAt + pathsLen;
  const sigAt = align8(textAt + textLen);
  const lineAtAt = sigAt + count * SIG * 8;
  const pathAtAt = lineAtAt + count * 4;
  const oidAt = pathAtAt + count * 4;
  const flagAt = oidAt + count * OID;
  const endAt = flagAt + count;
  if (buf.length !== endAt + END.length || !buf.subarray(endAt).equals(END)) return null;
  // Typed arrays need aligned offsets: copy the numeric sections into their own memory.
  const f64 = new Float64Array(count * SIG);
  Buffer.from(f64.buffer).set(buf.subarray(sigAt, lineAtAt));
  const u32 = (at: number) => {
    const a = new Uint32Array(count);
    Buffer.from(a.buffer).set(buf.subarray(at, at + count * 4));
    return a;
  };
  const rec: Records = {
    count,
    paths: buf.subarray(pathsAt, textAt),
    text: buf.subarray(textAt, textAt + textLen),
    sigs: f64,
    lineAt: u32(lineAtAt),
    pathAt: u32(pathAtAt),
    oids: buf.subarray(oidAt, flagAt),
    flags: buf.subarray(flagAt, endAt),
  };
  // One decode and one split for all paths: far cheaper than a string per record.
  const paths = rec.paths.toString(isAscii(rec.paths) ? 'latin1' : 'utf8').split('\0');
  if (paths.length !== count + 1 || paths[count] !== '') return null;
  if (count > 0 && (rec.lineAt[0] !== 0 || rec.lineAt[count - 1] >= textLen || rec.text[textLen - 1] !== 10)) return null;
  const nodes: Node[] = new Array(count);
  for (let i = 0; i < count; i++) {
    const type = TYPES[rec.flags[i] & TYPE_MASK];
    if (type === undefined) return null;
    nodes[i] = new CachedNode(paths[i], type, rec, i);
  }
  return { commit: head[1], tree: head[2], settings: head[3], nodes, byPath: new CachedPaths(nodes), saved: { baseBytes: buf.length, journalBytes: 0 } };
}

/** Look-ups of files not entered yet answered by a binary search before all are entered at once. */
const SEARCHED_LOOKUPS = 64;

/**
 * A loaded cache's nodes by path, its files entered only when needed. A full scan asks for the
 * directories and symlinks it walks, and for a file only when the file changed; replaying a
 * journal sets and deletes a few paths: with few changes, 100,000 files never go into the Map
 * (some 20 ms and its garbage). A file not entered yet is found by a binary search in the
 * cache's order, up to SEARCHED_LOOKUPS times; then, and for an iteration, all go in.
 */
class CachedPaths extends Map<string, Node> {
  /** Files not entered yet, in path byte order; null once they are. */
  private files: Node[] | null;
  /** Paths of those files deleted meanwhile. */
  private deleted = new Set<string>();
  private count: number;
  private searches = 0;

  constructor(nodes: Node[]) {
    super();
    const files: Node[] = [];
    for (const n of nodes) {
      if (n.type === 'file') files.push(n);
      else super.set(n.path, n);
    }
    this.files = files.length > 0 ? files : null;
    this.count = nodes.length;
  }

  private complete(): void {
    const files = this.files;
    if (files === null) return;
    this.files = null;
    // Set (replaced) or deleted meanwhile: as the Map has it now.
    for (const n of files) if (!this.deleted.has(n.path) && !super.has(n.path)) super.set(n.path, n);
    this.deleted.clear();
  }

  /** The file at path among those not entered yet (and not deleted); undefined when none. */
  private pendingFile(path: string): Node | undefined {
    const files = this.files;
    if (files === null || this.deleted.has(path)) return undefined;
    if (++this.searches > SEARCHED_LOOKUPS) {
      this.complete();
      return super.get(path);
    }
    const i = lowerBoundPath(files.length, (k) => files[k].path, path);
    return i < files.length && files[i].path === path ? files[i] : undefined;
  }

  override get(path: string): Node | undefined {
    return super.get(path) ?? this.pendingFile(path);
  }

  override has(path: string): boolean {
    return this.get(path) !== undefined;
  }

  override get size(): number {
    return this.files === null ? super.size : this.count;
  }

  override set(path: string, node: Node): this {
    if (this.files !== null) {
      if (!this.has(path)) this.count++;
      this.deleted.delete(path);
    }
    return super.set(path, node);
  }

  override delete(path: string): boolean {
    if (this.files === null) return super.delete(path);
    if (!this.has(path)) return false;
    this.count--;
    this.deleted.add(path);
    super.delete(path);
    return true;
  }

  override clear(): void {
    this.files = null;
    this.deleted.clear();
    super.clear();
  }

  override forEach(fn: (node: Node, path: string, map: Map<string, Node>) => void, self?: unknown): void {
    this.complete();
    super.forEach(fn, self);
  }

  override keys(): MapIterator<string> {
    this.complete();
    return super.keys();
  }

  override values(): MapIterator<Node> {
    this.complete();
    return super.values();
  }

  override entries(): MapIterator<[string, Node]> {
    this.complete();
    return super.entries();
  }

  override [Symbol.iterator](): MapIterator<[string, Node]> {
    return this.entries();
  }
}

function align8(n: number): number {
  return (n + 7) & ~7;
}

/** How many nodes from `at` on are pristine cached nodes of consecutive records of one file. */
function unchangedRun(nodes: Node[], at: number): number {
  const first = nodes[at];
  if (!(first instanceof CachedNode) || !first.pristine) return 0;
  let k = 1;
  for (; at + k < nodes.length; k++) {
    const n = nodes[at + k];
    if (!(n instanceof CachedNode) || n.rec !== first.rec || n.i !== first.i + k || !n.pristine) break;
  }
  return k;
}

/**
 * Bytes made of blocks of an old cache and new strings: the strings between two blocks become
 * one Buffer (a Buffer per record made a first snapshot's cache of 60,000 paths cost some
 * 100,000 small allocations).
 */
class ByteParts {
  private readonly list: Buffer[] = [];
  private strings: string[] = [];

  /** Its length in bytes. */
  addString(s: string): number {
    this.strings.push(s);
    return Buffer.byteLength(s);
  }

  addBytes(b: Buffer): void {
    this.joinStrings();
    this.list.push(b);
  }

  done(): Buffer[] {
    this.joinStrings();
    return this.list;
  }

  private joinStrings(): void {
    if (this.strings.length === 0) return;
    this.list.push(Buffer.from(this.strings.join('')));
    this.strings = [];
  }
}

/**
 * Written to a temp file renamed into place, but without fsync: the cache only saves work, and
 * a torn one (wrong length, no END) is simply not used. The journal goes first (its lines extend
 * the old file). The old cache is removed before the
 * rename: ext4 starts writing out a file renamed over another at once (auto_da_alloc), which
 * puts all of the cache's blocks in the journal commit that the next fsync (of a pack, the
 * branch, the status) waits for; without the rename-over they go out with ordinary writeback.
 */
export async function saveStatCache(file: string, c: { commit: string; tree: string; settings: string; nodes: Node[] }): Promise<CacheOnDisk> {
  const count = c.nodes.length;
  const sigs = new Float64Array(count * SIG);
  const lineAt = new Uint32Array(count);
  const pathAt = new Uint32Array(count);
  const oids = Buffer.alloc(count * OID);
  const flags = Buffer.alloc(count);
  const paths = new ByteParts();
  const text = new ByteParts();
  let textPos = 0;
  let pathsPos = 0;
  for (let i = 0; i < count; ) {
    const n = c.nodes[i];
    const run = unchangedRun(c.nodes, i);
    if (run > 0) {
      // Records loaded from one file, unchanged and in the same order: copied as blocks, their
      // offsets moved by where the block now starts.
      const { rec, i: from } = n as CachedNode;
      const to = from + run;
      sigs.set(rec.sigs.subarray(from * SIG, to * SIG), i * SIG);
      rec.oids.copy(oids, i * OID, from * OID, to * OID);
      rec.flags.copy(flags, i, from, to);
      const lineEnd = to < rec.count ? rec.lineAt[to] : rec.text.length;
      const pathEnd = to < rec.count ? rec.pathAt[to] : rec.paths.length;
      const lineShift = textPos - rec.lineAt[from];
      const pathShift = pathsPos - rec.pathAt[from];
      for (let k = 0; k < run; k++) {
        lineAt[i + k] = rec.lineAt[from + k] + lineShift;
        pathAt[i + k] = rec.pathAt[from + k] + pathShift;
      }
      paths.addBytes(rec.paths.subarray(rec.pathAt[from], pathEnd));
      text.addBytes(rec.text.subarray(rec.lineAt[from], lineEnd));
      textPos += lineEnd - rec.lineAt[from];
      pathsPos += pathEnd - rec.pathAt[from];
      i += run;
      continue;
    }
    let f = TYPES.indexOf(n.type);
    const s = n.sig;
    if (s !== null) {
      sigs.set([s.dev, s.ino, s.size, s.mtimeMs, s.ctimeMs], i * SIG);
      f |= SIG_VALID;
    }
    if (n.oid !== '') {
      oids.write(n.oid, i * OID, OID, 'hex');
      f |= HAS_OID;
    }
    flags[i] = f;
    lineAt[i] = textPos;
    pathAt[i] = pathsPos;
    textPos += text.addString(n.line + '\n');
    pathsPos += paths.addString(n.path + '\0');
    i++;
  }
  const header = Buffer.from(`${MAGIC}\t${c.commit}\t${c.tree}\t${c.settings}\t${count}\t${pathsPos}\t${textPos}\n`);
  const before = header.length + pathsPos + textPos;
  const view = (a: Float64Array | Uint32Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);
  const parts = [header, ...paths.done(), ...text.done(), Buffer.alloc(align8(before) - before), view(sigs), view(lineAt), view(pathAt), oids, flags, END];
  const tmp = `${file}.tmp-${process.pid}`;
  const whole = Buffer.concat(parts);
  await fs.promises.rm(journalOf(file), { force: true });
  await fs.promises.writeFile(tmp, whole, { mode: 0o600 });
  await fs.promises.rm(file, { force: true });
  await fs.promises.rename(tmp, file);
  return { baseBytes: whole.length, journalBytes: 0 };
}
