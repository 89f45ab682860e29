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

/** In git's tree order: byte order of names, a directory compared as if its name ended in '/'. */
export function serializeTree(entries: TreeEntry[]): Buffer {
  // Sort keys made once per entry: comparing through compareTreeEntries would make two
  // buffers per comparison, which a directory of thousands of entries feels.
  const keyed = entries.map((e) => ({ e, key: Buffer.from(e.mode === '040000' || e.mode === '40000' ? e.name + '/' : e.name) }));
  keyed.sort((a, b) => Buffer.compare(a.key, b.key));
  const parts: Buffer[] = [];
  for (const { e } of keyed) {
    const mode = e.mode === '040000' ? '40000' : e.mode;
    parts.push(Buffer.from(`${mode} ${e.name}\0`), Buffer.from(e.oid, 'hex'));
  }
  return Buffer.concat(parts);
}

/**
 * A tree with some entries' ids (and file modes) replaced, made from its stored bytes: entry
 * order cannot change when only ids and file modes do (100644 and 100755 sort alike). null
 * when a named entry is missing or a mode would change its length.
 */
export function patchTree(content: Buffer, changes: Map<string, { oid: string; mode?: string }>): Buffer | null {
  const out = Buffer.from(content);
  const wanted = new Map<string, { oid: string; mode?: string }>();
  for (const [name, v] of changes) wanted.set(Buffer.from(name).toString('latin1'), v);
  let found = 0;
  for (let p = 0; p < out.length && found < wanted.size; ) {
    const sp = out.indexOf(0x20, p);
    const nul = out.indexOf(0, sp);
    if (sp < 0 || nul < 0 || nul + 21 > out.length) return null;
    const v = wanted.get(out.toString('latin1', sp + 1, nul));
    if (v !== undefined) {
      found++;
      if (v.mode !== undefined && v.mode !== out.toString('latin1', p, sp)) {
        if (v.mode.length !== sp - p) return null;
        out.write(v.mode, p, 'latin1');
      }
      out.write(v.oid, nul + 1, 20, 'hex');
    }
    p = nul + 21;
  }
  return found === wanted.size ? out : null;
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
