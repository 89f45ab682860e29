// The snapshot format: what a commit in a pacha repository holds besides the file contents.
//
//   <tree>/.pacha/format     "pacha-snapshot 1\n"
//   <tree>/.pacha/roots      watched host paths of this snapshot, one per line (escaped), sorted
//   <tree>/.pacha/metadata   one line per path under the roots, sorted by path bytes:
//       <path>\t<type>\t<mode>\t<user>:<uid>\t<group>:<gid>\t<mtime>\t<size>\t<target>
//     path   host path without the leading slash (etc/nginx/nginx.conf), escaped
//     type   file | dir | symlink
//     mode   4 octal digits, permission bits incl. setuid/setgid/sticky (4755, 1777, 0600)
//     user   owner name at snapshot time (empty when the uid had no name), then the numeric uid
//     group  likewise for the group
//     mtime  seconds.nanoseconds since the epoch (from lstat with bigint precision)
//     size   bytes (files), target length (symlinks), 0 (dirs)
//     target symlink target, escaped; empty for other types
//
// Escaping (paths and targets): backslash, tab, newline, CR and other C0 control characters
// and DEL become \\ \t \n \r \xHH, so every entry is one line and `git log -p` reads well.
//
// In the git tree, a file is stored at its path (mode 100644, or 100755 when any x bit is set),
// a symlink as a 120000 entry whose blob is the target, a directory as a tree. Directories that
// end up empty are only in the metadata (git cannot hold empty trees meaningfully). Names that
// native git refuses in a tree (`git fsck --strict`: .git and its NTFS/HFS look-alikes, .gitmodules
// and the other .git* files), and names with a backslash (which isomorphic-git refuses), are stored
// under an encoded name; see gitName()/realName().

export const FORMAT_VERSION = 1;
export const PACHA_DIR = '.pacha';
export const FORMAT_FILE = '.pacha/format';
export const ROOTS_FILE = '.pacha/roots';
export const METADATA_FILE = '.pacha/metadata';

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

export class FormatError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'FormatError';
  }
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

export function encodeEntry(e: MetadataEntry): string {
  return [
    escapeField(e.path),
    e.type,
    formatMode(e.mode),
    `${e.user}:${e.uid}`,
    `${e.group}:${e.gid}`,
    formatMtime(e.mtimeNs),
    String(e.size),
    e.type === 'symlink' ? escapeField(e.target ?? '') : '',
  ].join('\t');
}

function splitOwner(s: string, what: string): [string, number] {
  const i = s.lastIndexOf(':');
  const id = Number(s.slice(i + 1));
  if (i < 0 || !/^\d+$/.test(s.slice(i + 1)) || !Number.isSafeInteger(id)) throw new FormatError(`bad ${what} "${s}" (expected name:id)`);
  return [s.slice(0, i), id];
}

export function decodeEntry(line: string): MetadataEntry {
  const f = line.split('\t');
  if (f.length !== 8) throw new FormatError(`metadata line has ${f.length} fields, expected 8`);
  const type = f[1];
  if (type !== 'file' && type !== 'dir' && type !== 'symlink') throw new FormatError(`bad type "${type}"`);
  if (!/^[0-7]{4}$/.test(f[2])) throw new FormatError(`bad mode "${f[2]}"`);
  const [user, uid] = splitOwner(f[3], 'owner');
  const [group, gid] = splitOwner(f[4], 'group');
  if (!/^\d+$/.test(f[6])) throw new FormatError(`bad size "${f[6]}"`);
  const e: MetadataEntry = {
    path: unescapeField(f[0]),
    type,
    mode: parseInt(f[2], 8),
    uid,
    user,
    gid,
    group,
    mtimeNs: parseMtime(f[5]),
    size: Number(f[6]),
  };
  if (type === 'symlink') e.target = unescapeField(f[7]);
  else if (f[7] !== '') throw new FormatError('target given for a non-symlink');
  return e;
}

/** Byte order of UTF-8 paths: the order of .pacha/metadata and of `pacha diff` output. */
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

export function encodeMetadata(entries: Iterable<MetadataEntry>): string {
  const sorted = [...entries].sort((x, y) => comparePaths(x.path, y.path));
  let out = '';
  for (const e of sorted) out += encodeEntry(e) + '\n';
  return out;
}

/** Parse .pacha/metadata; errors name the line. */
export function decodeMetadata(text: string): MetadataEntry[] {
  const out: MetadataEntry[] = [];
  const lines = text.split('\n');
  if (lines[lines.length - 1] === '') lines.pop();
  lines.forEach((l, i) => {
    try {
      out.push(decodeEntry(l));
    } catch (e) {
      throw new FormatError(`.pacha/metadata line ${i + 1}: ${(e as Error).message}`);
    }
  });
  return out;
}

export function encodeRoots(roots: string[]): string {
  return [...roots].sort(comparePaths).map((r) => escapeField(r) + '\n').join('');
}

export function decodeRoots(text: string): string[] {
  return text.split('\n').filter((l) => l.length > 0).map(unescapeField);
}

// --- names in git trees -------------------------------------------------------------------

const ENCODED_PREFIX = '.pacha-name-';
// Code points HFS+ ignores when comparing names (git's is_hfs_dotgit list).
const HFS_IGNORABLE = /[\u200c-\u200f\u202a-\u202e\u206a-\u206f\ufeff]/u;

/** Would native git (fsck --strict) refuse or treat specially this name in a tree? */
function needsEncoding(name: string): boolean {
  if (name.startsWith(ENCODED_PREFIX)) return true;
  // isomorphic-git (our reader) refuses a backslash in a tree entry name.
  if (name.includes('\\')) return true;
  const lower = name.toLowerCase();
  if (lower.startsWith('.git') || lower.startsWith('git~') || lower.startsWith('gitmod~')) return true;
  if (HFS_IGNORABLE.test(name)) {
    const stripped = name.replace(new RegExp(HFS_IGNORABLE.source, 'gu'), '').toLowerCase();
    if (stripped.startsWith('.git')) return true;
  }
  // NTFS ignores trailing dots and spaces: ".git . " is .git there.
  if (/^\.git[. ]*$/i.test(name.replace(/[. ]+$/, ''))) return true;
  return false;
}

/** Name of a path component inside the git tree. Reversible with realName(). */
export function gitName(name: string): string {
  return needsEncoding(name) ? ENCODED_PREFIX + Buffer.from(name).toString('hex') : name;
}

export function realName(stored: string): string {
  if (!stored.startsWith(ENCODED_PREFIX)) return stored;
  const hex = stored.slice(ENCODED_PREFIX.length);
  if (!/^([0-9a-f]{2})+$/.test(hex)) throw new FormatError(`bad encoded name "${stored}"`);
  return Buffer.from(hex, 'hex').toString();
}

/** Path inside the git tree for a real path (each component through gitName). */
export function gitPath(realPath: string): string {
  // A host directory named /.pacha must not collide with the snapshot's own .pacha/.
  return realPath
    .split('/')
    .map((n, i) => (i === 0 && n === PACHA_DIR ? ENCODED_PREFIX + Buffer.from(n).toString('hex') : gitName(n)))
    .join('/');
}

export function realPath(storedPath: string): string {
  return storedPath.split('/').map(realName).join('/');
}

/** Git tree mode of an entry. */
export function gitMode(e: Pick<MetadataEntry, 'type' | 'mode'>): string {
  if (e.type === 'dir') return '040000';
  if (e.type === 'symlink') return '120000';
  return e.mode & 0o111 ? '100755' : '100644';
}
