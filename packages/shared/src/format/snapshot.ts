import { comparePaths, decodeFields, decodeMetadataV1, escapeField, FormatError, type MetadataEntry, splitLines, unescapeField, UnsupportedFormatError } from './entry.ts';
import { gitPath, PACHA_NAME, realName } from './names.ts';

// What a commit in a pacha repository holds besides the file contents (docs/snapshot-format.md):
//
//   .pacha/format     "pacha-snapshot <version>\n"
//   .pacha/roots      the watched host paths, one per line (escaped), sorted
//   format 1: .pacha/metadata   one line per path, the path first (entry.ts)
//   format 2: <dir>/.pacha      per recorded directory: its own record ('.') and those of its
//                               files and symlinks, one line each, name first; directories
//                               describe themselves in their own .pacha
//             .pacha/top        records of watched files and symlinks directly below /
//   .pacha/<name>     further generated files (a package manifest, accounts), written by the
//                     engine's caller and read back by name
//
// Readers accept every version up to FORMAT_VERSION; writers write FORMAT_VERSION.

export const FORMAT_VERSION = 2;
export const READABLE_VERSIONS = [1, 2];
export const PACHA_DIR = PACHA_NAME;
/** Files of the top .pacha/ directory that the format itself defines. */
export const FORMAT_NAME = 'format';
export const ROOTS_NAME = 'roots';
export const METADATA_V1_NAME = 'metadata';
export const TOP_METADATA_NAME = 'top';
const RESERVED = new Set([FORMAT_NAME, ROOTS_NAME, METADATA_V1_NAME, TOP_METADATA_NAME]);
/** The record of a directory itself inside its own .pacha. */
export const SELF = '.';

export function formatText(version = FORMAT_VERSION): string {
  return `pacha-snapshot ${version}\n`;
}

export function parseFormatText(text: string): number {
  const m = /^pacha-snapshot (\d+)$/.exec(text.trim());
  const v = m ? Number(m[1]) : NaN;
  if (!READABLE_VERSIONS.includes(v)) {
    throw new UnsupportedFormatError(`.pacha/format is "${text.trim().slice(0, 60)}"; this pacha reads ${READABLE_VERSIONS.map((n) => `"${formatText(n).trim()}"`).join(' and ')}`);
  }
  return v;
}

/** May `name` be written as an extra generated file in .pacha/ (not one of the format's own)? */
export function checkExtraName(name: string): void {
  if (!/^[a-z][a-z0-9._-]*$/.test(name) || RESERVED.has(name)) {
    throw new FormatError(`"${name}" cannot be a file of .pacha/ (accepted: lower-case letters, digits, '.', '_', '-', not ${[...RESERVED].join(', ')})`);
  }
}

export function encodeRoots(roots: string[]): string {
  return [...roots].sort(comparePaths).map((r) => escapeField(r) + '\n').join('');
}

export function decodeRoots(text: string): string[] {
  return text.split('\n').filter((l) => l.length > 0).map(unescapeField);
}

// --- per-directory metadata (format 2) --------------------------------------------------------

/** A .pacha line: the escaped name inside the directory, a tab, the record's fields. */
export function dirLine(name: string, fields: string): string {
  return escapeField(name) + '\t' + fields;
}

/** Records of one format 2 metadata file; `dir` is the directory's real path ('' for the top). */
export function decodeDirMetadata(dir: string, text: string, where: string): MetadataEntry[] {
  return splitLines(text).map((l, i) => {
    try {
      const tab = l.indexOf('\t');
      const name = unescapeField(tab < 0 ? l : l.slice(0, tab));
      if (name === SELF) {
        if (dir === '') throw new FormatError('a record of the top directory itself');
        return decodeFields(dir, l.slice(tab + 1));
      }
      if (name === '' || name === '..' || name.includes('/') || name.includes('\0')) throw new FormatError(`bad name "${escapeField(name)}" (one path component expected)`);
      return decodeFields(dir === '' ? name : `${dir}/${name}`, l.slice(tab + 1));
    } catch (e) {
      throw new FormatError(`${where} line ${i + 1}: ${(e as Error).message}`);
    }
  });
}

// --- the commit message -----------------------------------------------------------------------

export interface ChangeCounts {
  added: number;
  changed: number;
  deleted: number;
  metadataOnly: number;
}

/** The first line of a snapshot's commit message: the only place these words are made. */
export function summaryLine(s: ChangeCounts): string {
  return `${s.added} added, ${s.changed} changed, ${s.deleted} deleted, ${s.metadataOnly} metadata-only`;
}

const COUNT_KEYS: [keyof ChangeCounts, string][] = [
  ['added', 'added'],
  ['changed', 'changed'],
  ['deleted', 'deleted'],
  ['metadataOnly', 'metadata-only'],
];

/**
 * The commit message: the summary line for people (git log --oneline), the operator's note,
 * then trailers carrying the host and the counts as data (read back by snapshotTrailers).
 */
export function snapshotMessage(counts: ChangeCounts, host: string, note?: string): string {
  let message = summaryLine(counts) + '\n';
  if (note && note.trim() !== '') message += `\n${note.trim()}\n`;
  message += `\nPacha-Host: ${host}\n`;
  message += `Pacha-Changes: ${COUNT_KEYS.map(([k, w]) => `${w}=${counts[k]}`).join(' ')}\n`;
  return message;
}

/** Host and counts from a snapshot's trailers (null where a commit has none, e.g. older ones). */
export function snapshotTrailers(message: string): { host: string | null; counts: ChangeCounts | null } {
  let host: string | null = null;
  let counts: ChangeCounts | null = null;
  for (const line of message.split('\n')) {
    const colon = line.indexOf(': ');
    if (colon < 0) continue;
    const key = line.slice(0, colon);
    const value = line.slice(colon + 2).trim();
    if (key === 'Pacha-Host') host = value;
    else if (key === 'Pacha-Changes') {
      const pairs = new Map(value.split(' ').map((p) => p.split('=') as [string, string]));
      const c: Partial<Record<keyof ChangeCounts, number>> = {};
      for (const [k, w] of COUNT_KEYS) {
        const n = Number(pairs.get(w));
        if (Number.isSafeInteger(n) && n >= 0) c[k] = n;
      }
      if (Object.keys(c).length === COUNT_KEYS.length) counts = c as ChangeCounts;
    }
  }
  return { host, counts };
}

// --- reading a snapshot's tree (both formats) -------------------------------------------------

export interface TreeSource {
  /** Entries of a tree object; modes as git writes them (40000 for a directory). */
  readTree(oid: string): { name: string; mode: string; oid: string }[];
  /** Content of a blob. */
  readBlob(oid: string): Buffer;
}

export interface SnapshotItem {
  /** Real host path without the leading slash. */
  path: string;
  /** Git tree mode, six digits: 100644, 100755, 120000, 040000, 160000. */
  mode: string;
  oid: string;
  kind: 'blob' | 'tree' | 'commit';
}

export interface SnapshotContents {
  version: number;
  roots: string[];
  /** Every recorded path, in path byte order. */
  entries: MetadataEntry[];
  /** Every path of the tree outside pacha's own files, by real path. */
  tree: Map<string, SnapshotItem>;
  /** The files of the top .pacha/ directory: name -> blob id (format, roots, extra files). */
  pachaFiles: Map<string, string>;
}

function kindOf(mode: string): SnapshotItem['kind'] {
  return mode === '040000' ? 'tree' : mode === '160000' ? 'commit' : 'blob';
}

/**
 * Read a snapshot whose root tree is `rootTree`: its format, roots, every record and every
 * tree entry. File contents are not read. Throws FormatError when the snapshot does not follow
 * the format (and lets the source's own errors through).
 */
export function readSnapshotTree(src: TreeSource, rootTree: string): SnapshotContents {
  const tree = new Map<string, SnapshotItem>();
  const pachaFiles = new Map<string, string>();
  const top = src.readTree(rootTree);
  const pachaDir = top.find((e) => e.name === PACHA_DIR);
  if (pachaDir === undefined) throw new FormatError('no .pacha directory: not a pacha snapshot');
  if (pachaDir.mode.padStart(6, '0') !== '040000') throw new FormatError('.pacha is not a directory');
  for (const f of src.readTree(pachaDir.oid)) pachaFiles.set(f.name, f.oid);
  const text = (name: string): string => {
    const oid = pachaFiles.get(name);
    if (oid === undefined) throw new FormatError(`no .pacha/${name}: not a pacha snapshot`);
    return src.readBlob(oid).toString('utf8');
  };
  const version = parseFormatText(text(FORMAT_NAME));
  const roots = decodeRoots(text(ROOTS_NAME));
  const dirMetadata: { dir: string; oid: string }[] = [];
  const walk = (entries: { name: string; mode: string; oid: string }[], prefix: string): void => {
    for (const e of entries) {
      const mode = e.mode.padStart(6, '0');
      if (e.name === PACHA_DIR && (prefix === '' || version >= 2)) {
        if (prefix === '') continue; // the snapshot's own files, read above
        if (kindOf(mode) !== 'blob') throw new FormatError(`/${prefix}.pacha is not a file`);
        dirMetadata.push({ dir: prefix.slice(0, -1), oid: e.oid });
        continue;
      }
      let name: string;
      try {
        name = realName(e.name);
      } catch (err) {
        throw new FormatError(`/${prefix}${e.name}: ${(err as Error).message}`);
      }
      const p = prefix + name;
      const kind = kindOf(mode);
      tree.set(p, { path: p, mode, oid: e.oid, kind });
      if (kind === 'tree') walk(src.readTree(e.oid), p + '/');
    }
  };
  walk(top, '');
  let entries: MetadataEntry[];
  if (version === 1) entries = decodeMetadataV1(text(METADATA_V1_NAME));
  else {
    entries = pachaFiles.has(TOP_METADATA_NAME) ? decodeDirMetadata('', text(TOP_METADATA_NAME), '.pacha/top') : [];
    for (const { dir, oid } of dirMetadata) {
      for (const e of decodeDirMetadata(dir, src.readBlob(oid).toString('utf8'), `/${dir}/.pacha`)) entries.push(e);
    }
    entries.sort(pathOrder(entries));
  }
  return { version, roots, entries, tree, pachaFiles };
}

/** Paths with a high code point sort differently in UTF-16 and UTF-8: compare bytes then. */
export function pathComparator(paths: Iterable<string>): (a: string, b: string) => number {
  for (const p of paths) if (/[\ud800-\uffff]/.test(p)) return comparePaths;
  return (a, b) => (a < b ? -1 : a > b ? 1 : 0);
}

function pathOrder(entries: MetadataEntry[]): (a: MetadataEntry, b: MetadataEntry) => number {
  const cmp = pathComparator(entries.map((e) => e.path));
  return (a, b) => cmp(a.path, b.path);
}

/** The format version of a snapshot and the files of its top .pacha/ (name -> blob id). */
export function readPachaDir(src: TreeSource, rootTree: string): { version: number; files: Map<string, string> } {
  const pachaDir = src.readTree(rootTree).find((e) => e.name === PACHA_DIR);
  if (pachaDir === undefined) throw new FormatError('no .pacha directory: not a pacha snapshot');
  const files = new Map(src.readTree(pachaDir.oid).map((f) => [f.name, f.oid]));
  const formatOid = files.get(FORMAT_NAME);
  if (formatOid === undefined) throw new FormatError('no .pacha/format: not a pacha snapshot');
  return { version: parseFormatText(src.readBlob(formatOid).toString('utf8')), files };
}

/**
 * The record of one path (null when the snapshot has none), reading only what it needs: in
 * format 2 the metadata of the path's directory.
 */
export function readEntry(src: TreeSource, rootTree: string, path: string): MetadataEntry | null {
  const { version, files } = readPachaDir(src, rootTree);
  if (version === 1) {
    const oid = files.get(METADATA_V1_NAME);
    if (oid === undefined) throw new FormatError('no .pacha/metadata: not a pacha snapshot');
    return decodeMetadataV1(src.readBlob(oid).toString('utf8')).find((e) => e.path === path) ?? null;
  }
  const lookIn = (oid: string | undefined, dir: string, where: string) =>
    oid === undefined ? null : (decodeDirMetadata(dir, src.readBlob(oid).toString('utf8'), where).find((e) => e.path === path) ?? null);
  const slash = path.lastIndexOf('/');
  const parent = slash < 0 ? '' : path.slice(0, slash);
  // A file's record is in its directory's .pacha, a directory's in its own.
  const metaOf = (dir: string): string | undefined => {
    if (dir === '') return files.get(TOP_METADATA_NAME);
    let cur = rootTree;
    for (const part of gitPath(dir, version).split('/')) {
      const e = src.readTree(cur).find((x) => x.name === part);
      if (e === undefined || e.mode.padStart(6, '0') !== '040000') return undefined;
      cur = e.oid;
    }
    return src.readTree(cur).find((x) => x.name === PACHA_NAME)?.oid;
  };
  return lookIn(metaOf(parent), parent, `/${parent}/.pacha`) ?? lookIn(metaOf(path), path, `/${path}/.pacha`);
}
