import fs from 'node:fs';
import { type EntryType, unescapeField } from './format.ts';

// The stat cache: what the last snapshot knew about every path, so that a re-snapshot of an
// unchanged file reads no content. One text line per path, in the order of .pacha/metadata:
//   <metadata line>\t<stat signature>\t<object id>
// signature = dev:ino:size:mtimeNs:ctimeNs (empty when it cannot be trusted: the entry was
// modified within the clock tick of the snapshot, "racily clean" in git's words).
// object id = blob of a file or symlink, tree of a directory (empty when git holds no tree).
// The header names the commit it describes; a cache for another commit is ignored.

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
}

const MAGIC = 'pacha-statcache 1';
const END = 'END';

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

// The daemon snapshots again and again in one process: the cache it wrote last is kept in memory
// and used again when the file on disk is still the one it wrote (same inode, size and mtime).
let memo: { file: string; key: string; cache: StatCache } | null = null;

function fileKey(file: string): string | null {
  try {
    const st = fs.statSync(file, { bigint: true });
    return `${st.ino}:${st.size}:${st.mtimeNs}`;
  } catch {
    return null;
  }
}

/**
 * Load the cache. The in-memory copy is handed out once (the caller may change its nodes), so
 * a snapshot that fails half way never leaves a stale copy behind.
 */
export function loadStatCache(file: string): StatCache | null {
  if (memo !== null && memo.file === file) {
    const m = memo;
    memo = null;
    if (fileKey(file) === m.key) return m.cache;
  }
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch {
    return null;
  }
  const lines = text.split('\n');
  const head = lines[0].split('\t');
  if (head[0] !== MAGIC || head.length !== 4) return null;
  if (lines.length < 3 || lines[lines.length - 2] !== END || lines[lines.length - 1] !== '') return null;
  lines.length -= 2;
  const nodes: Node[] = [];
  const byPath = new Map<string, Node>();
  try {
    for (let i = 1; i < lines.length; i++) {
      const l = lines[i];
      if (l.length === 0) continue;
      const o = l.lastIndexOf('\t');
      const s = l.lastIndexOf('\t', o - 1);
      const line = l.slice(0, s);
      const node: Node = { path: pathOfLine(line), type: typeOfLine(line), line, sig: l.slice(s + 1, o), oid: l.slice(o + 1), raw: l };
      nodes.push(node);
      byPath.set(node.path, node);
    }
  } catch {
    return null;
  }
  return { commit: head[1], tree: head[2], settings: head[3], nodes, byPath };
}

/**
 * Written with a temp file and a rename but without fsync: the cache only saves work, and a
 * torn one (no END line, or another commit in the header) is simply not used.
 */
export function saveStatCache(file: string, c: { commit: string; tree: string; settings: string; nodes: Node[]; byPath?: Map<string, Node> }): void {
  const parts: string[] = [`${MAGIC}\t${c.commit}\t${c.tree}\t${c.settings}`];
  // raw is dropped by whoever changes a cached node (the tree builder giving a directory a new tree).
  for (const n of c.nodes) parts.push(n.raw ?? `${n.line}\t${n.sig}\t${n.oid}`);
  parts.push(END, '');
  const tmp = `${file}.tmp-${process.pid}`;
  fs.writeFileSync(tmp, parts.join('\n'), { mode: 0o600 });
  fs.renameSync(tmp, file);
  const key = fileKey(file);
  let byPath = c.byPath;
  if (!byPath) {
    byPath = new Map<string, Node>();
    for (const n of c.nodes) byPath.set(n.path, n);
  }
  memo = key === null ? null : { file, key, cache: { commit: c.commit, tree: c.tree, settings: c.settings, nodes: c.nodes, byPath } };
}
