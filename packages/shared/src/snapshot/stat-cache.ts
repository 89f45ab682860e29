import { isAscii } from 'node:buffer';
import fs from 'node:fs';
import type { EntryType } from './format.ts';

// The stat cache: what the last snapshot knew about every path, so that a re-snapshot of an
// unchanged file reads no content. Per path, in the order of .pacha/metadata: its metadata line,
// its stat signature (dev, ino, size, mtime, ctime; absent when it cannot be trusted because the
// entry was modified within the clock tick of the snapshot, "racily clean" in git's words) and
// its object id (blob of a file or symlink, tree of a directory; absent when git holds no tree).
// The header names the commit it describes; a cache for another commit is ignored.
//
// It is binary so that 100,000 paths load in a few tens of milliseconds and take little memory:
//   header line  "pacha-statcache 3\t<commit>\t<tree>\t<settings>\t<count>\t<path bytes>\t<text bytes>\n"
//   paths        every real path followed by a NUL byte (a path cannot hold one)
//   text         the metadata lines, each ending in \n (byte for byte the .pacha/metadata blob),
//                then 0-7 zero bytes so that the next section starts at a multiple of 8
//   quick        count x 5 float64: dev, ino, size, mtimeMs, ctimeMs as a plain fs.Stats has them
//   exact        count x 40 bytes: dev, ino, size (u64), mtimeNs, ctimeNs (i64), little-endian
//   lineAt       count x u32: where each record's line starts in text
//   pathAt       count x u32: where each record's path starts in paths
//   oids         count x 20 bytes
//   flags        count x 1 byte: type (bits 0-1), signature valid (4), object id present (8)
//   "END\n"
// Numbers are in the machine's byte order: the file never leaves the host that wrote it.
// Loaded nodes read their line, signature and object id from these arrays only when asked.

export interface Node {
  /** Host path without the leading slash, real name. */
  path: string;
  type: EntryType;
  /** The entry's .pacha/metadata line. */
  line: string;
  sig: string;
  oid: string;
  /** sig as plain numbers, parsed on first use (null: not comparable that way). */
  quick?: QuickSig | null;
}

/** A stat signature in the numbers of a plain (non-bigint) fs.Stats. */
export interface QuickSig {
  dev: number;
  ino: number;
  size: number;
  mtimeMs: number;
  ctimeMs: number;
}

/** Node computes mtimeMs as sec * 1e3 + nsec / 1e6; doing the same gives bit-identical numbers. */
function msOf(ns: string): number {
  const sec = ns.length > 9 ? Number(ns.slice(0, -9)) : 0;
  return sec * 1000 + Number(ns.slice(-9)) / 1e6;
}

export function quickSig(n: Node): QuickSig | null {
  if (n.quick !== undefined) return n.quick;
  const f = n.sig.split(':');
  n.quick =
    f.length !== 5 || f[3].startsWith('-') || f[4].startsWith('-')
      ? null
      : { dev: Number(f[0]), ino: Number(f[1]), size: Number(f[2]), mtimeMs: msOf(f[3]), ctimeMs: msOf(f[4]) };
  return n.quick;
}

export interface StatCache {
  commit: string;
  tree: string;
  /** Roots, ignore patterns, size limit, passwd/group: listings and lines are reused only when equal. */
  settings: string;
  /** In .pacha/metadata order. */
  nodes: Node[];
  byPath: Map<string, Node>;
  /** The metadata lines as stored (each ending in \n): the .pacha/metadata blob of `commit`. */
  metadata?: Buffer;
}

const MAGIC = 'pacha-statcache 3';
const END = Buffer.from('END\n');
const QUICK = 40;
const EXACT = 40;
const OID = 20;
const TYPES: EntryType[] = ['file', 'dir', 'symlink'];
/** Flag bits of a record: the low two bits are the index in TYPES. */
export const TYPE_MASK = 3;
export const TYPE_FILE = 0;
export const TYPE_DIR = 1;
export const SIG_VALID = 4;
const HAS_OID = 8;

/** Permission bits of a metadata line (third field). */
export function modeOfLine(line: string): number {
  const a = line.indexOf('\t');
  const b = line.indexOf('\t', a + 1);
  return parseInt(line.slice(b + 1, b + 5), 8);
}

/** The sections of one loaded cache file, shared by its nodes. */
export interface Records {
  count: number;
  paths: Buffer;
  /** latin1 when every path is ASCII: the same strings, decoded faster than UTF-8. */
  pathEncoding: 'latin1' | 'utf8';
  text: Buffer;
  quick: Float64Array;
  exact: Buffer;
  lineAt: Uint32Array;
  pathAt: Uint32Array;
  oids: Buffer;
  flags: Buffer;
}

/**
 * A node as the cache file describes it. Line, signature and object id are made into strings
 * only when something asks (most paths are compared through quickMatches() and never need them).
 */
class CachedNode implements Node {
  path: string;
  type: EntryType;
  readonly rec: Records;
  readonly i: number;
  private lineSet: string | undefined;
  private sigSet: string | undefined;
  private oidSet: string | undefined;

  constructor(path: string, type: EntryType, rec: Records, i: number) {
    this.path = path;
    this.type = type;
    this.rec = rec;
    this.i = i;
  }

  get line(): string {
    return this.lineSet ?? recordLine(this.rec, this.i);
  }

  set line(v: string) {
    this.lineSet = v;
  }

  get sig(): string {
    if (this.sigSet !== undefined) return this.sigSet;
    if ((this.rec.flags[this.i] & SIG_VALID) === 0) return '';
    const e = this.rec.exact;
    const o = this.i * EXACT;
    return `${e.readBigUInt64LE(o)}:${e.readBigUInt64LE(o + 8)}:${e.readBigUInt64LE(o + 16)}:${e.readBigInt64LE(o + 24)}:${e.readBigInt64LE(o + 32)}`;
  }

  set sig(v: string) {
    this.sigSet = v;
  }

  get oid(): string {
    return this.oidSet ?? recordOid(this.rec, this.i);
  }

  set oid(v: string) {
    this.oidSet = v;
  }

  /** Line, signature and object id all as loaded: the record can be copied as it is. */
  get pristine(): boolean {
    return this.lineSet === undefined && this.sigSet === undefined && this.oidSet === undefined;
  }

  get pristineLine(): boolean {
    return this.lineSet === undefined;
  }

  get pristineSig(): boolean {
    return this.sigSet === undefined;
  }

  get pristineOid(): boolean {
    return this.oidSet === undefined;
  }
}

/**
 * Same signature as a plain (non-bigint) lstat, compared number by number: the full scan's test
 * for "unchanged", with nothing allocated per path.
 */
export function quickMatches(n: Node, st: fs.Stats): boolean {
  if (n instanceof CachedNode && n.pristineSig) return recordMatches(n.rec, n.i, st);
  if (n.sig === '') return false;
  const q = quickSig(n);
  return q !== null && st.mtimeMs === q.mtimeMs && st.ctimeMs === q.ctimeMs && st.size === q.size && st.ino === q.ino && st.dev === q.dev;
}

/**
 * A cache file as read, its layout checked, nothing parsed yet. Its bytes live in a
 * SharedArrayBuffer so that a worker thread can check file signatures while this thread parses
 * the paths (stat-verify.ts).
 */
export interface StatCacheFile {
  commit: string;
  tree: string;
  settings: string;
  count: number;
  bytes: SharedArrayBuffer;
  /** Byte offsets of the sections in `bytes`. */
  pathsAt: number;
  pathsLen: number;
  textAt: number;
  textLen: number;
  quickAt: number;
  exactAt: number;
  lineAtAt: number;
  pathAtAt: number;
  oidAt: number;
  flagAt: number;
}

/** Read the cache file; null when it is missing, torn or of another format. */
export function readStatCache(file: string): StatCacheFile | null {
  let fd: number;
  try {
    fd = fs.openSync(file, 'r');
  } catch {
    return null;
  }
  let buf: Buffer;
  try {
    const size = fs.fstatSync(fd).size;
    buf = Buffer.from(new SharedArrayBuffer(size));
    for (let at = 0; at < size; ) {
      const n = fs.readSync(fd, buf, at, size - at, at);
      if (n === 0) return null;
      at += n;
    }
  } catch {
    return null;
  } finally {
    fs.closeSync(fd);
  }
  const nl = buf.indexOf(10);
  if (nl < 0) return null;
  const head = buf.toString('utf8', 0, nl).split('\t');
  if (head[0] !== MAGIC || head.length !== 7) return null;
  const [count, pathsLen, textLen] = head.slice(4).map(Number);
  if (![count, pathsLen, textLen].every((n) => Number.isSafeInteger(n) && n >= 0)) return null;
  const pathsAt = nl + 1;
  const textAt = pathsAt + pathsLen;
  const quickAt = align8(textAt + textLen);
  const exactAt = quickAt + count * QUICK;
  const lineAtAt = exactAt + count * EXACT;
  const pathAtAt = lineAtAt + count * 4;
  const oidAt = pathAtAt + count * 4;
  const flagAt = oidAt + count * OID;
  const endAt = flagAt + count;
  if (buf.length !== endAt + END.length || !buf.subarray(endAt).equals(END)) return null;
  return { commit: head[1], tree: head[2], settings: head[3], count, bytes: buf.buffer as SharedArrayBuffer, pathsAt, pathsLen, textAt, textLen, quickAt, exactAt, lineAtAt, pathAtAt, oidAt, flagAt };
}

/** Views of a cache file's sections (no copies). */
export function recordsOf(f: StatCacheFile): Records {
  const buf = Buffer.from(f.bytes);
  const { count } = f;
  return {
    count,
    paths: buf.subarray(f.pathsAt, f.pathsAt + f.pathsLen),
    pathEncoding: isAscii(buf.subarray(f.pathsAt, f.pathsAt + f.pathsLen)) ? 'latin1' : 'utf8',
    text: buf.subarray(f.textAt, f.textAt + f.textLen),
    quick: new Float64Array(f.bytes, f.quickAt, count * 5),
    exact: buf.subarray(f.exactAt, f.lineAtAt),
    lineAt: new Uint32Array(f.bytes, f.lineAtAt, count),
    pathAt: new Uint32Array(f.bytes, f.pathAtAt, count),
    oids: buf.subarray(f.oidAt, f.flagAt),
    flags: buf.subarray(f.flagAt, f.flagAt + count),
  };
}

/** The nodes of a cache file; null when its sections do not agree. */
export function parseStatCache(f: StatCacheFile): StatCache | null {
  const { count } = f;
  const rec = recordsOf(f);
  // One decode and one split for all paths: far cheaper than a string per line.
  const paths = rec.paths.toString(rec.pathEncoding).split('\0');
  if (paths.length !== count + 1 || paths[count] !== '') return null;
  if (count > 0 && (rec.lineAt[0] !== 0 || rec.lineAt[count - 1] >= f.textLen || rec.text[f.textLen - 1] !== 10)) return null;
  const nodes: Node[] = new Array(count);
  const byPath = new Map<string, Node>();
  for (let i = 0; i < count; i++) {
    const type = TYPES[rec.flags[i] & TYPE_MASK];
    if (type === undefined) return null;
    const node = new CachedNode(paths[i], type, rec, i);
    nodes[i] = node;
    byPath.set(node.path, node);
  }
  return { commit: f.commit, tree: f.tree, settings: f.settings, nodes, byPath, metadata: rec.text };
}

/** Load the cache; null when it is missing, torn or of another format. */
export function loadStatCache(file: string): StatCache | null {
  const f = readStatCache(file);
  return f === null ? null : parseStatCache(f);
}

/** The .pacha/metadata line of record i. */
export function recordLine(rec: Records, i: number): string {
  const end = i + 1 < rec.count ? rec.lineAt[i + 1] : rec.text.length;
  return rec.text.toString('utf8', rec.lineAt[i], end - 1);
}

/** The object id of record i ('' when none). */
export function recordOid(rec: Records, i: number): string {
  return (rec.flags[i] & HAS_OID) === 0 ? '' : rec.oids.toString('hex', i * OID, i * OID + OID);
}

/** Record i's signature against a plain lstat, number by number (false when it has none). */
export function recordMatches(rec: Records, i: number, st: fs.Stats): boolean {
  if ((rec.flags[i] & SIG_VALID) === 0) return false;
  const q = rec.quick;
  const o = i * 5;
  return st.mtimeMs === q[o + 3] && st.ctimeMs === q[o + 4] && st.size === q[o + 2] && st.ino === q[o + 1] && st.dev === q[o];
}

/** The type of record i. */
export function recordType(rec: Records, i: number): EntryType {
  return TYPES[rec.flags[i] & TYPE_MASK];
}

/** The path of record i. */
export function recordPath(rec: Records, i: number): string {
  const end = i + 1 < rec.count ? rec.pathAt[i + 1] : rec.paths.length;
  return rec.paths.toString(rec.pathEncoding, rec.pathAt[i], end - 1);
}

/**
 * Where a node's line lies in the text of the cache file it was loaded from (its \n included),
 * or null when it was made since or its line was set again.
 */
export function lineBytes(n: Node): { text: Buffer; start: number; end: number } | null {
  if (!(n instanceof CachedNode) || !n.pristineLine) return null;
  const { rec, i } = n;
  return { text: rec.text, start: rec.lineAt[i], end: i + 1 < rec.count ? rec.lineAt[i + 1] : rec.text.length };
}

/** The record number of a node loaded from a cache file (-1: made since). */
export function cacheIndex(n: Node): number {
  return n instanceof CachedNode ? n.i : -1;
}

function align8(n: number): number {
  return (n + 7) & ~7;
}

/** Node computes mtimeMs as sec * 1e3 + nsec / 1e6 from the same numbers; so do we. */
function msOfNs(ns: bigint): number {
  return Number(ns / 1_000_000_000n) * 1000 + Number(ns % 1_000_000_000n) / 1e6;
}

/** Fill record i from a signature string; false when it is empty or not one of ours. */
function writeSig(sig: string, i: number, quick: Float64Array, exact: Buffer): boolean {
  if (sig === '') return false;
  const f = sig.split(':');
  if (f.length !== 5 || !f.every((x) => /^-?\d+$/.test(x))) return false;
  const [dev, ino, size, mt, ct] = f.map((x) => BigInt(x));
  if (dev < 0n || ino < 0n || size < 0n) return false;
  const o = i * EXACT;
  exact.writeBigUInt64LE(dev, o);
  exact.writeBigUInt64LE(ino, o + 8);
  exact.writeBigUInt64LE(size, o + 16);
  exact.writeBigInt64LE(mt, o + 24);
  exact.writeBigInt64LE(ct, o + 32);
  // A plain fs.Stats cannot be compared exactly with a time before 1970: never match quickly.
  const neg = mt < 0n || ct < 0n;
  quick.set(neg ? [NaN, NaN, NaN, NaN, NaN] : [Number(dev), Number(ino), Number(size), msOfNs(mt), msOfNs(ct)], i * 5);
  return true;
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
 * Written with a temp file and a rename but without fsync: the cache only saves work, and a
 * torn one (wrong length, no END) is simply not used. `metadata`, when given, must be the
 * nodes' lines as .pacha/metadata holds them; it saves encoding them again.
 */
export function saveStatCache(file: string, c: { commit: string; tree: string; settings: string; nodes: Node[]; metadata?: Buffer }): Promise<void> {
  const count = c.nodes.length;
  const text = c.metadata ?? Buffer.from(count === 0 ? '' : c.nodes.map((n) => n.line).join('\n') + '\n');
  const quick = new Float64Array(count * 5);
  const exact = Buffer.alloc(count * EXACT);
  const lineAt = new Uint32Array(count);
  const pathAt = new Uint32Array(count);
  const oids = Buffer.alloc(count * OID);
  const flags = Buffer.alloc(count);
  const paths: Buffer[] = [];
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
      rec.exact.copy(exact, i * EXACT, from * EXACT, to * EXACT);
      quick.set(rec.quick.subarray(from * 5, to * 5), i * 5);
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
      paths.push(rec.paths.subarray(rec.pathAt[from], pathEnd));
      textPos += lineEnd - rec.lineAt[from];
      pathsPos += pathEnd - rec.pathAt[from];
      i += run;
      continue;
    }
    let f = TYPES.indexOf(n.type);
    if (n instanceof CachedNode && n.pristineSig) {
      f |= n.rec.flags[n.i] & SIG_VALID;
      n.rec.exact.copy(exact, i * EXACT, n.i * EXACT, n.i * EXACT + EXACT);
      quick.set(n.rec.quick.subarray(n.i * 5, n.i * 5 + 5), i * 5);
    } else if (writeSig(n.sig, i, quick, exact)) f |= SIG_VALID;
    if (n instanceof CachedNode && n.pristineOid) {
      f |= n.rec.flags[n.i] & HAS_OID;
      n.rec.oids.copy(oids, i * OID, n.i * OID, n.i * OID + OID);
    } else if (n.oid !== '') {
      oids.write(n.oid, i * OID, OID, 'hex');
      f |= HAS_OID;
    }
    flags[i] = f;
    lineAt[i] = textPos;
    pathAt[i] = pathsPos;
    const p = Buffer.from(n.path + '\0');
    paths.push(p);
    textPos += Buffer.byteLength(n.line) + 1;
    pathsPos += p.length;
    i++;
  }
  if (textPos !== text.length) throw new Error(`internal: the stat cache's text (${text.length} bytes) is not its nodes' lines (${textPos})`);
  const pathBytes = Buffer.concat(paths, pathsPos);
  return writeCacheFile(file, { commit: c.commit, tree: c.tree, settings: c.settings, count, paths: pathBytes, text, quick, exact, lineAt, pathAt, oids, flags });
}

/** A record's new values; what is absent stays as it was. */
export interface RecordUpdate {
  line?: string;
  sig?: string;
  oid?: string;
}

/**
 * Save the cache of a snapshot that changed only some records of `f` (same paths, same order).
 * f's sections are updated in place (f is used up: it no longer describes its file) and
 * written out with the new text. `metadata` must be f's text with the updated lines in place
 * (spliceLines).
 */
export function saveStatCacheUpdate(file: string, f: StatCacheFile, updates: Map<number, RecordUpdate>, c: { commit: string; tree: string; metadata: Buffer }): Promise<void> {
  const rec = recordsOf(f);
  const { count } = f;
  const { quick, exact, oids, flags, lineAt } = rec;
  const order = [...updates.keys()].sort((a, b) => a - b);
  let shift = 0;
  let from = 0; // lineAt[from..] still needs the shift so far
  for (const i of order) {
    const u = updates.get(i)!;
    if (u.sig !== undefined) {
      if (writeSig(u.sig, i, quick, exact)) flags[i] |= SIG_VALID;
      else flags[i] &= ~SIG_VALID;
    }
    if (u.oid !== undefined) {
      if (u.oid === '') flags[i] &= ~HAS_OID;
      else {
        oids.write(u.oid, i * OID, OID, 'hex');
        flags[i] |= HAS_OID;
      }
    }
    if (u.line !== undefined) {
      // The old line's length is read before lineAt[i + 1] is moved.
      const oldLen = (i + 1 < count ? lineAt[i + 1] : rec.text.length) - lineAt[i];
      for (let k = from; k <= i; k++) lineAt[k] += shift;
      from = i + 1;
      shift += Buffer.byteLength(u.line) + 1 - oldLen;
    }
  }
  if (shift !== 0) for (let k = from; k < count; k++) lineAt[k] += shift;
  if (rec.text.length + shift !== c.metadata.length) throw new Error(`internal: the updated metadata (${c.metadata.length} bytes) does not match the updated lines (${rec.text.length + shift})`);
  return writeCacheFile(file, { commit: c.commit, tree: c.tree, settings: f.settings, count, paths: rec.paths, text: c.metadata, quick, exact, lineAt, pathAt: rec.pathAt, oids, flags });
}

/**
 * Written on the thread pool (the caller's work goes on meanwhile; the arrays must stay as they
 * are until it resolves), to a temp file renamed over the old one.
 */
async function writeCacheFile(
  file: string,
  c: { commit: string; tree: string; settings: string; count: number; paths: Buffer; text: Buffer; quick: Float64Array; exact: Buffer; lineAt: Uint32Array; pathAt: Uint32Array; oids: Buffer; flags: Buffer },
): Promise<void> {
  const header = Buffer.from(`${MAGIC}\t${c.commit}\t${c.tree}\t${c.settings}\t${c.count}\t${c.paths.length}\t${c.text.length}\n`);
  const before = header.length + c.paths.length + c.text.length;
  const pad = Buffer.alloc(align8(before) - before);
  const view = (a: Float64Array | Uint32Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);
  const parts = [header, c.paths, c.text, pad, view(c.quick), c.exact, view(c.lineAt), view(c.pathAt), c.oids, c.flags, END];
  const tmp = `${file}.tmp-${process.pid}`;
  const fh = await fs.promises.open(tmp, 'w', 0o600);
  try {
    // writev may stop short: go on from where it stopped.
    let rest = parts.filter((p) => p.length > 0);
    while (rest.length > 0) {
      let { bytesWritten: n } = await fh.writev(rest);
      while (rest.length > 0 && n >= rest[0].length) n -= rest.shift()!.length;
      if (n > 0) rest[0] = rest[0].subarray(n);
    }
  } finally {
    await fh.close();
  }
  await fs.promises.rename(tmp, file);
}
