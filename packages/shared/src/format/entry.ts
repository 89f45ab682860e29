import { PachaError } from '../errors.ts';

// One path's metadata record, and its text forms. The same fields in both formats:
//   type   file | dir | symlink
//   mode   4 octal digits, permission bits incl. setuid/setgid/sticky (4755, 1777, 0600)
//   user   owner name at snapshot time (empty when the uid had no name), ':', the numeric uid
//   group  likewise for the group
//   mtime  seconds.nanoseconds since the epoch (from lstat with bigint precision)
//   size   bytes (files), target length (symlinks), 0 (dirs)
//   target symlink target, escaped; empty for other types
//   xattrs (format 2 only) extended attributes as one text field, empty when none: its syntax
//          is xattr/encode.ts's (sorted name=value items; no tab, no newline); here it is text
// Format 1 puts the escaped host path first (one .pacha/metadata for the whole snapshot),
// format 2 the escaped name inside the directory ('.' for the directory itself).
//
// Escaping (names, paths, targets): backslash, tab, newline, CR and other C0 control
// characters and DEL become \\ \t \n \r \xHH, so every record is one line.

export type EntryType = 'file' | 'dir' | 'symlink';

export interface MetadataEntry {
  /** Host path without leading slash, unescaped (real name). */
  path: string;
  type: EntryType;
  /** Permission bits incl. 07000 (no file-type bits). */
  mode: number;
  uid: number;
  user: string;
  gid: number;
  group: string;
  /** Nanoseconds since the epoch. */
  mtimeNs: bigint;
  size: number;
  /** Symlink target (symlinks only). */
  target?: string;
  /** Extended attributes as their metadata field (xattr/encode.ts; format 2; absent: none). */
  xattrs?: string;
}

/** A snapshot's text does not follow the format. */
export class FormatError extends PachaError {
  override readonly code: string = 'EFORMAT';
  constructor(message: string) {
    super(message);
    this.name = 'FormatError';
  }
}

/** A snapshot of a format version this pacha does not read (written by a newer one). */
export class UnsupportedFormatError extends FormatError {
  constructor(message: string) {
    super(message);
    this.name = 'UnsupportedFormatError';
  }
}

export function escapeField(s: string): string {
  let out = '';
  for (const ch of s) {
    const c = ch.codePointAt(0)!;
    if (ch === '\\') out += '\\\\';
    else if (ch === '\t') out += '\\t';
    else if (ch === '\n') out += '\\n';
    else if (ch === '\r') out += '\\r';
    else if (c < 0x20 || c === 0x7f) out += '\\x' + c.toString(16).padStart(2, '0');
    else out += ch;
  }
  return out;
}

export function unescapeField(s: string): string {
  if (!s.includes('\\')) return s;
  let out = '';
  for (let i = 0; i < s.length; i++) {
    const ch = s[i];
    if (ch !== '\\') {
      out += ch;
      continue;
    }
    const n = s[++i];
    if (n === '\\') out += '\\';
    else if (n === 't') out += '\t';
    else if (n === 'n') out += '\n';
    else if (n === 'r') out += '\r';
    else if (n === 'x') {
      const hex = s.slice(i + 1, i + 3);
      if (!/^[0-9a-f]{2}$/i.test(hex)) throw new FormatError(`bad escape \\x${hex}`);
      out += String.fromCharCode(parseInt(hex, 16));
      i += 2;
    } else throw new FormatError(`bad escape \\${n ?? ''}`);
  }
  return out;
}

export function formatMode(mode: number): string {
  return (mode & 0o7777).toString(8).padStart(4, '0');
}

export function formatMtime(ns: bigint): string {
  const neg = ns < 0n;
  const a = neg ? -ns : ns;
  return `${neg ? '-' : ''}${a / 1_000_000_000n}.${(a % 1_000_000_000n).toString().padStart(9, '0')}`;
}

export function parseMtime(s: string): bigint {
  const m = /^(-?)(\d+)\.(\d{9})$/.exec(s);
  if (!m) throw new FormatError(`bad mtime "${s}" (expected seconds.nanoseconds)`);
  const v = BigInt(m[2]) * 1_000_000_000n + BigInt(m[3]);
  return m[1] ? -v : v;
}

/**
 * The fields after the name (type ... xattrs), tab-separated: a record without its name. The
 * stat cache keeps these, and format 2's line is the escaped name, a tab and them.
 */
export function encodeFields(e: Omit<MetadataEntry, 'path'>): string {
  return [
    e.type,
    formatMode(e.mode),
    `${e.user}:${e.uid}`,
    `${e.group}:${e.gid}`,
    formatMtime(e.mtimeNs),
    String(e.size),
    e.type === 'symlink' ? escapeField(e.target ?? '') : '',
    e.xattrs ?? '',
  ].join('\t');
}

function splitOwner(s: string, what: string): [string, number] {
  const i = s.lastIndexOf(':');
  const id = Number(s.slice(i + 1));
  if (i < 0 || !/^\d+$/.test(s.slice(i + 1)) || !Number.isSafeInteger(id)) throw new FormatError(`bad ${what} "${s}" (expected name:id)`);
  return [s.slice(0, i), id];
}

/** A record from its fields (f[0] is the type); `path` is the real path it belongs to. */
function entryFromFields(path: string, f: string[]): MetadataEntry {
  const type = f[0];
  if (type !== 'file' && type !== 'dir' && type !== 'symlink') throw new FormatError(`bad type "${type}"`);
  if (!/^[0-7]{4}$/.test(f[1])) throw new FormatError(`bad mode "${f[1]}"`);
  const [user, uid] = splitOwner(f[2], 'owner');
  const [group, gid] = splitOwner(f[3], 'group');
  if (!/^\d+$/.test(f[5])) throw new FormatError(`bad size "${f[5]}"`);
  const e: MetadataEntry = { path, type, mode: parseInt(f[1], 8), uid, user, gid, group, mtimeNs: parseMtime(f[4]), size: Number(f[5]) };
  if (type === 'symlink') e.target = unescapeField(f[6]);
  else if (f[6] !== '') throw new FormatError('target given for a non-symlink');
  if (f.length > 7 && f[7] !== '') e.xattrs = f[7];
  return e;
}

/** The record of `path` from encodeFields() text. */
export function decodeFields(path: string, fields: string): MetadataEntry {
  const f = fields.split('\t');
  if (f.length !== 8) throw new FormatError(`metadata record has ${f.length + 1} fields, expected 9`);
  return entryFromFields(path, f);
}

/** Permission bits of encodeFields() text (its second field). */
export function modeOfFields(fields: string): number {
  const a = fields.indexOf('\t');
  return parseInt(fields.slice(a + 1, a + 5), 8);
}

// --- format 1: one line per path, the path first ---------------------------------------------

export function encodeEntryV1(e: MetadataEntry): string {
  // Format 1 has no xattrs field: its seven fields are format 2's first seven.
  return escapeField(e.path) + '\t' + encodeFields({ ...e, xattrs: undefined }).slice(0, -1);
}

export function decodeEntryV1(line: string): MetadataEntry {
  const f = line.split('\t');
  if (f.length !== 8) throw new FormatError(`metadata line has ${f.length} fields, expected 8`);
  return entryFromFields(unescapeField(f[0]), f.slice(1));
}

/** Format 1's .pacha/metadata text (kept: test-support writes format 1 repositories with it). */
export function encodeMetadataV1(entries: Iterable<MetadataEntry>): string {
  const sorted = [...entries].sort((x, y) => comparePaths(x.path, y.path));
  let out = '';
  for (const e of sorted) out += encodeEntryV1(e) + '\n';
  return out;
}

/** Parse format 1's .pacha/metadata; errors name the line. */
export function decodeMetadataV1(text: string): MetadataEntry[] {
  return splitLines(text).map((l, i) => {
    try {
      return decodeEntryV1(l);
    } catch (e) {
      throw new FormatError(`.pacha/metadata line ${i + 1}: ${(e as Error).message}`);
    }
  });
}

export function splitLines(text: string): string[] {
  const lines = text.split('\n');
  if (lines[lines.length - 1] === '') lines.pop();
  return lines;
}

// --- order ------------------------------------------------------------------------------------

/** Byte order of UTF-8 paths: the order of the metadata and of `pacha diff` output. */
export function comparePaths(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a), Buffer.from(b));
}

/** In a list of `count` paths in path byte order (pathAt(i) the i-th), the first not before `p`. */
export function lowerBoundPath(count: number, pathAt: (i: number) => string, p: string): number {
  let lo = 0;
  let hi = count;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (comparePaths(pathAt(mid), p) < 0) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}
