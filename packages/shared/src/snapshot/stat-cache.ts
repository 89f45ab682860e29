import fs from 'node:fs';
import { type EntryType, unescapeField } from './format.ts';

// The stat cache: what the last snapshot knew about every path, so that a re-snapshot of an
// unchanged file reads no content. Per path, in the order of .pacha/metadata: its metadata line,
// its stat signature (dev, ino, size, mtime, ctime; absent when it cannot be trusted because the
// entry was modified within the clock tick of the snapshot, "racily clean" in git's words) and
// its object id (blob of a file or symlink, tree of a directory; absent when git holds no tree).
// The header names the commit it describes; a cache for another commit is ignored.
//
// It is binary so that 100,000 paths load in a few tens of milliseconds and take little memory:
//   header line  "pacha-statcache 2\t<commit>\t<tree>\t<settings>\t<count>\t<text bytes>\n"
//   text         the metadata lines, each ending in \n (byte for byte the .pacha/metadata blob),
//                then 0-7 zero bytes so that the next section starts at a multiple of 8
//   quick        count x 5 float64: dev, ino, size, mtimeMs, ctimeMs as a plain fs.Stats has them
//   exact        count x 40 bytes: dev, ino, size (u64), mtimeNs, ctimeNs (i64), little-endian
//   oids         count x 20 bytes
//   flags        count x 1 byte: type (bits 0-1), signature valid (4), object id present (8)
//   "END\n"
// Loaded nodes read their signature and object id from these arrays only when asked.

export interface Node {
  /** Host path without the leading slash, real name. */
  path: string;
  type: EntryType;
  /** The entry's .pacha/metadata line. */
  line: string;
  sig: string;
  oid: string;
  /** The cache line this node was read from (written back as is while the node is unchanged). */
  raw?: string;
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

const MAGIC = 'pacha-statcache 2';
const END = Buffer.from('END\n');
const QUICK = 40;
const EXACT = 40;
const OID = 20;
const TYPES: EntryType[] = ['file', 'dir', 'symlink'];
const SIG_VALID = 4;
const HAS_OID = 8;

export function typeOfLine(line: string): EntryType {
  const a = line.indexOf('\t');
  const b = line.indexOf('\t', a + 1);
  return line.slice(a + 1, b) as EntryType;
}

export function pathOfLine(line: string): string {
  return unescapeField(line.slice(0, line.indexOf('\t')));
}

/** Permission bits of a metadata line (third field). */
export function modeOfLine(line: string): number {
  const a = line.indexOf('\t');
  const b = line.indexOf('\t', a + 1);
  return parseInt(line.slice(b + 1, b + 5), 8);
}

/** The arrays of one loaded cache file, shared by its nodes. */
interface Records {
  quick: Float64Array;
  exact: Buffer;
  oids: Buffer;
  flags: Buffer;
}

/**
 * A node as the cache file describes it. Signature and object id are made into strings only
 * when something asks (most paths are compared through quickMatches() and never need them).
 */
class CachedNode implements Node {
  path: string;
  type: EntryType;
  line: string;
  raw?: string;
  readonly rec: Records;
  readonly i: number;
  private sigSet: string | undefined;
  private oidSet: string | undefined;

  constructor(path: string, type: EntryType, line: string, rec: Records, i: number) {
    this.path = path;
    this.type = type;
    this.line = line;
    this.rec = rec;
    this.i = i;
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
    if (this.oidSet !== undefined) return this.oidSet;
    if ((this.rec.flags[this.i] & HAS_OID) === 0) return '';
    return this.rec.oids.toString('hex', this.i * OID, this.i * OID + OID);
  }

  set oid(v: string) {
    this.oidSet = v;
  }

  /** Signature and object id still as loaded: their bytes can be copied as they are. */
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
  if (n instanceof CachedNode && n.pristineSig) {
    if ((n.rec.flags[n.i] & SIG_VALID) === 0) return false;
    const q = n.rec.quick;
    const o = n.i * 5;
    return st.mtimeMs === q[o + 3] && st.ctimeMs === q[o + 4] && st.size === q[o + 2] && st.ino === q[o + 1] && st.dev === q[o];
  }
  if (n.sig === '') return false;
  const q = quickSig(n);
  return q !== null && st.mtimeMs === q.mtimeMs && st.ctimeMs === q.ctimeMs && st.size === q.size && st.ino === q.ino && st.dev === q.dev;
}

/** Load the cache; null when it is missing, torn or of another format. */
export function loadStatCache(file: string): StatCache | null {
  let buf: Buffer;
  try {
    buf = fs.readFileSync(file);
  } catch {
    return null;
  }
  const nl = buf.indexOf(10);
  if (nl < 0) return null;
  const head = buf.toString('utf8', 0, nl).split('\t');
  if (head[0] !== MAGIC || head.length !== 6) return null;
  const count = Number(head[4]);
  const textLen = Number(head[5]);
  if (!Number.isSafeInteger(count) || !Number.isSafeInteger(textLen) || count < 0 || textLen < 0) return null;
  const textAt = nl + 1;
  const quickAt = align8(textAt + textLen);
  const exactAt = quickAt + count * QUICK;
  const oidAt = exactAt + count * EXACT;
  const flagAt = oidAt + count * OID;
  const endAt = flagAt + count;
  if (buf.length !== endAt + END.length || !buf.subarray(endAt).equals(END)) return null;
  // Views into the file's buffer, not copies: it is all needed (the text for the next metadata blob).
  let quick: Float64Array;
  if ((buf.byteOffset + quickAt) % 8 === 0) quick = new Float64Array(buf.buffer, buf.byteOffset + quickAt, count * 5);
  else {
    quick = new Float64Array(count * 5);
    buf.copy(Buffer.from(quick.buffer), 0, quickAt, exactAt);
  }
  const rec: Records = { quick, exact: buf.subarray(exactAt, oidAt), oids: buf.subarray(oidAt, flagAt), flags: buf.subarray(flagAt, endAt) };
  const metadata = buf.subarray(textAt, textAt + textLen);
  const lines = metadata.toString('utf8').split('\n');
  if (lines.length !== count + 1 || lines[count] !== '') return null;
  const nodes: Node[] = new Array(count);
  const byPath = new Map<string, Node>();
  try {
    for (let i = 0; i < count; i++) {
      const line = lines[i];
      const type = TYPES[rec.flags[i] & 3];
      if (type === undefined) return null;
      const node = new CachedNode(pathOfLine(line), type, line, rec, i);
      nodes[i] = node;
      byPath.set(node.path, node);
    }
  } catch {
    return null;
  }
  return { commit: head[1], tree: head[2], settings: head[3], nodes, byPath, metadata };
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

/**
 * Written with a temp file and a rename but without fsync: the cache only saves work, and a
 * torn one (wrong length, no END) is simply not used. `metadata`, when given, must be the
 * nodes' lines as .pacha/metadata holds them; it saves encoding them again.
 */
export function saveStatCache(file: string, c: { commit: string; tree: string; settings: string; nodes: Node[]; byPath?: Map<string, Node>; metadata?: Buffer }): void {
  const count = c.nodes.length;
  const text = c.metadata ?? Buffer.from(count === 0 ? '' : c.nodes.map((n) => n.line).join('\n') + '\n');
  const quick = new Float64Array(count * 5);
  const exact = Buffer.alloc(count * EXACT);
  const oids = Buffer.alloc(count * OID);
  const flags = Buffer.alloc(count);
  for (let i = 0; i < count; i++) {
    const n = c.nodes[i];
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
  }
  const header = Buffer.from(`${MAGIC}\t${c.commit}\t${c.tree}\t${c.settings}\t${count}\t${text.length}\n`);
  const tmp = `${file}.tmp-${process.pid}`;
  const fd = fs.openSync(tmp, 'w', 0o600);
  try {
    const pad = Buffer.alloc(align8(header.length + text.length) - header.length - text.length);
    const parts = [header, text, pad, Buffer.from(quick.buffer, quick.byteOffset, quick.byteLength), exact, oids, flags, END];
    const total = parts.reduce((a, b) => a + b.length, 0);
    const done = fs.writevSync(fd, parts);
    // writev may stop short (it rarely does on a local file): write the rest plainly.
    if (done < total) {
      const rest = Buffer.concat(parts).subarray(done);
      for (let at = 0; at < rest.length; ) at += fs.writeSync(fd, rest, at);
    }
  } finally {
    fs.closeSync(fd);
  }
  fs.renameSync(tmp, file);
}
