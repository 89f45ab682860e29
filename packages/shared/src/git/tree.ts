// The tree object: "<mode> <name>\0<20-byte id>" per entry, in git's order.

export interface TreeEntry {
  /** Name inside the tree (already git-safe). */
  name: string;
  /** 100644, 100755, 120000, 40000, 160000 (a directory written without the leading zero, as git does). */
  mode: string;
  oid: string;
}

/** In git's tree order: byte order of names, a directory compared as if its name ended in '/'. */
export function serializeTree(entries: TreeEntry[]): Buffer {
  // Sort keys made once per entry: comparing through a comparator would make two buffers per
  // comparison, which a directory of thousands of entries feels.
  const keyed = entries.map((e) => ({ e, key: Buffer.from(e.mode === '040000' || e.mode === '40000' ? e.name + '/' : e.name) }));
  keyed.sort((a, b) => Buffer.compare(a.key, b.key));
  const parts: Buffer[] = [];
  for (const { e } of keyed) {
    const mode = e.mode === '040000' ? '40000' : e.mode;
    parts.push(Buffer.from(`${mode} ${e.name}\0`), Buffer.from(e.oid, 'hex'));
  }
  return Buffer.concat(parts);
}

/** A tree's entries in stored order; modes as stored (40000 for a directory). */
export function parseTree(content: Buffer): TreeEntry[] {
  const out: TreeEntry[] = [];
  let p = 0;
  while (p < content.length) {
    const sp = content.indexOf(0x20, p);
    const nul = sp < 0 ? -1 : content.indexOf(0, sp);
    if (sp < 0 || nul < 0 || nul + 21 > content.length) throw new Error('not a well-formed tree');
    out.push({
      mode: content.toString('latin1', p, sp),
      name: content.toString('utf8', sp + 1, nul),
      oid: content.toString('hex', nul + 1, nul + 21),
    });
    p = nul + 21;
  }
  return out;
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
