import crypto from 'node:crypto';

// Loose git object encoding: "<type> <size>\0<body>", hashed with SHA-1. Trees and commits are
// serialised here too, so that a snapshot writes every object into one pack without a detour.

export type ObjectType = 'commit' | 'tree' | 'blob' | 'tag';

/** Type numbers used in pack entry headers. */
export const PACK_TYPE: Record<ObjectType, number> = { commit: 1, tree: 2, blob: 3, tag: 4 };
export const TYPE_OF_PACK: Record<number, ObjectType> = { 1: 'commit', 2: 'tree', 3: 'blob', 4: 'tag' };

export function objectHeader(type: ObjectType, size: number): Buffer {
  return Buffer.from(`${type} ${size}\0`);
}

export function hashObject(type: ObjectType, data: Uint8Array): string {
  return crypto.createHash('sha1').update(objectHeader(type, data.length)).update(data).digest('hex');
}

export interface TreeEntry {
  /** Name inside the tree (already git-safe). */
  name: string;
  /** 100644, 100755, 120000, 040000 (written without the leading zero, as git does). */
  mode: string;
  oid: string;
}

/** Git's tree order: byte order of names, a directory compared as if its name ended in '/'. */
export function compareTreeEntries(a: TreeEntry, b: TreeEntry): number {
  const ka = a.mode === '040000' || a.mode === '40000' ? a.name + '/' : a.name;
  const kb = b.mode === '040000' || b.mode === '40000' ? b.name + '/' : b.name;
  return Buffer.compare(Buffer.from(ka), Buffer.from(kb));
}

export function serializeTree(entries: TreeEntry[]): Buffer {
  const sorted = [...entries].sort(compareTreeEntries);
  const parts: Buffer[] = [];
  for (const e of sorted) {
    const mode = e.mode === '040000' ? '40000' : e.mode;
    parts.push(Buffer.from(`${mode} ${e.name}\0`), Buffer.from(e.oid, 'hex'));
  }
  return Buffer.concat(parts);
}

export interface CommitFields {
  tree: string;
  parent: string | null;
  /** "Name <email>" */
  author: string;
  /** Seconds since the epoch. */
  time: number;
  message: string;
}

export function serializeCommit(c: CommitFields): Buffer {
  const who = `${c.author} ${c.time} +0000`;
  let s = `tree ${c.tree}\n`;
  if (c.parent) s += `parent ${c.parent}\n`;
  s += `author ${who}\ncommitter ${who}\n\n${c.message.endsWith('\n') ? c.message : c.message + '\n'}`;
  return Buffer.from(s);
}

export function isOid(s: string): boolean {
  return /^[0-9a-f]{40}$/.test(s);
}
