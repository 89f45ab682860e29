import { FormatError, type MetadataEntry } from './entry.ts';

// Names inside a snapshot's git tree. Names that native git refuses or treats specially in a
// tree (`git fsck --strict`: .git and its NTFS/HFS look-alikes, .gitmodules and the other .git*
// files), names with a backslash (which isomorphic-git refuses), and names pacha keeps for
// itself are stored as `.pacha-name-<hex of the UTF-8 bytes>`. pacha's own names: `.pacha`
// at the top (the snapshot's files) in both formats, and in format 2 `.pacha` at every level
// (each directory's metadata), so a host file or directory called `.pacha` is always encoded
// where the format reserves the name.

export const PACHA_NAME = '.pacha';
const ENCODED_PREFIX = '.pacha-name-';
// Code points HFS+ ignores when comparing names (git's is_hfs_dotgit list).
const HFS_IGNORABLE = /[\u200c-\u200f\u202a-\u202e\u206a-\u206f\ufeff]/u;

/** Would native git (fsck --strict) refuse or treat specially this name in a tree? */
function gitRefuses(name: string): boolean {
  if (name.startsWith(ENCODED_PREFIX)) return true;
  // Older pacha versions read with isomorphic-git, which refuses a backslash in a tree entry name.
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

function encode(name: string): string {
  return ENCODED_PREFIX + Buffer.from(name).toString('hex');
}

/**
 * Name of a path component inside the git tree of a snapshot of `version`; `top`: a name
 * directly below the tree's root. Reversible with realName().
 */
export function gitName(name: string, version: number, top = false): string {
  if (gitRefuses(name)) return encode(name);
  if (name === PACHA_NAME && (top || version >= 2)) return encode(name);
  return name;
}

export function realName(stored: string): string {
  if (!stored.startsWith(ENCODED_PREFIX)) return stored;
  const hex = stored.slice(ENCODED_PREFIX.length);
  if (!/^([0-9a-f]{2})+$/.test(hex)) throw new FormatError(`bad encoded name "${stored}"`);
  return Buffer.from(hex, 'hex').toString();
}

/** Path inside the git tree for a real path (each component through gitName). */
export function gitPath(realPath: string, version: number): string {
  return realPath
    .split('/')
    .map((n, i) => gitName(n, version, i === 0))
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
