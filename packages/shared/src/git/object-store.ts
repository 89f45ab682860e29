import fs from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';
import { PachaError } from '../errors.ts';
import { hashObject, isOid, type ObjectType, type TreeEntry } from './objects.ts';
import type { PackIndex } from './pack-index.ts';
import { PackReader, type GitObject } from './pack-reader.ts';

// RepoObjects: reading a repository's objects (packs, whole or delta, and loose objects, each
// checked against its id), its refs, and parsed commits and trees. Push, the rebuild and the
// master's admin commands read through it. (pack-index.ts's ObjectStore only answers which pack
// holds an object, for the snapshot writer.)

export type { GitObject, ObjectType, TreeEntry };
export { hashObject };

export interface CommitInfo {
  tree: string;
  parents: string[];
  /** Committer time, seconds since the epoch. */
  time: number;
  author: string;
  message: string;
}

export class MissingObjectError extends Error {
  readonly oid: string;
  constructor(oid: string, where: string) {
    super(`object ${oid} is missing from ${where}`);
    this.name = 'MissingObjectError';
    this.oid = oid;
  }
}

/** An object whose stored bytes do not inflate, or whose content does not hash to its id. */
export class CorruptObjectError extends PachaError {
  readonly oid: string;
  /** True when it inflated fine but hashes to another id. */
  readonly idMismatch: boolean;
  constructor(oid: string, message: string, idMismatch: boolean) {
    super(message);
    this.name = 'CorruptObjectError';
    this.oid = oid;
    this.idMismatch = idMismatch;
  }
}

const TYPES: Record<string, ObjectType> = { commit: 'commit', tree: 'tree', blob: 'blob', tag: 'tag' };

export class RepoObjects {
  readonly gitdir: string;
  private packs: PackReader[] | undefined;
  private indexes: PackIndex[] | undefined;

  /** `indexes`: the repository's pack indexes when already loaded (an ObjectStore's), not read again. */
  constructor(gitdir: string, indexes?: PackIndex[]) {
    this.gitdir = gitdir;
    this.indexes = indexes;
  }

  /** Open every pack with its index (lazily, once; refresh() picks up new ones). */
  packReaders(): PackReader[] {
    if (!this.packs && this.indexes) this.packs = this.indexes.map((ix) => new PackReader(ix.packFile, ix));
    if (!this.packs) {
      const dir = path.join(this.gitdir, 'objects', 'pack');
      let names: string[] = [];
      try {
        names = fs.readdirSync(dir);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
      }
      this.packs = names
        .filter((n) => n.endsWith('.pack') && names.includes(n.slice(0, -5) + '.idx'))
        .sort()
        .map((n) => new PackReader(path.join(dir, n)));
    }
    return this.packs;
  }

  refresh(): void {
    this.indexes = undefined; // read the pack directory again
    this.close();
  }

  close(): void {
    for (const p of this.packs ?? []) p.close();
    this.packs = undefined;
  }

  private loosePath(oid: string): string {
    return path.join(this.gitdir, 'objects', oid.slice(0, 2), oid.slice(2));
  }

  private readLoose(oid: string): GitObject | undefined {
    let compressed: Buffer;
    try {
      compressed = fs.readFileSync(this.loosePath(oid));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw e;
    }
    let raw: Buffer;
    try {
      raw = zlib.inflateSync(compressed);
    } catch (e) {
      throw new CorruptObjectError(oid, `loose object ${oid} is corrupt: ${(e as Error).message}`, false);
    }
    const nul = raw.indexOf(0);
    const [typeName, size] = raw.toString('latin1', 0, nul < 0 ? 0 : nul).split(' ');
    const type = TYPES[typeName];
    const content = raw.subarray(nul + 1);
    if (nul < 0 || !type || Number(size) !== content.length) throw new CorruptObjectError(oid, `loose object ${oid} is corrupt (bad header)`, false);
    if (hashObject(type, content) !== oid) throw new CorruptObjectError(oid, `loose object ${oid} is corrupt (content does not match its id)`, true);
    return { type, content };
  }

  /** The object, or undefined when the repository does not have it; throws when it is corrupt. */
  tryRead(oid: string): GitObject | undefined {
    const lookup = (o: string) => this.tryRead(o);
    for (const p of this.packReaders()) {
      const i = p.find(oid);
      if (i < 0) continue;
      let obj: GitObject;
      try {
        obj = p.readAt(p.offsetAt(i), lookup);
      } catch (e) {
        if (e instanceof CorruptObjectError) throw e; // its delta base, already named
        throw new CorruptObjectError(oid, `object ${oid} in ${p.packFile} is corrupt: ${(e as Error).message}`, false);
      }
      if (hashObject(obj.type, obj.content) !== oid) {
        throw new CorruptObjectError(oid, `object ${oid} in ${p.packFile} is corrupt (content does not match its id)`, true);
      }
      return obj;
    }
    return this.readLoose(oid);
  }

  read(oid: string): GitObject {
    const obj = this.tryRead(oid);
    if (!obj) throw new MissingObjectError(oid, this.gitdir);
    return obj;
  }

  has(oid: string): boolean {
    for (const p of this.packReaders()) if (p.has(oid)) return true;
    return fs.existsSync(this.loosePath(oid));
  }

  /**
   * The stored form of a whole (non-delta) packed object, ready to copy into a new pack;
   * undefined for loose or deltified objects (the caller deflates those itself).
   */
  storedEntry(oid: string): { type: ObjectType; size: number; data: Buffer } | undefined {
    for (const p of this.packReaders()) {
      const i = p.find(oid);
      if (i >= 0) return p.storedEntry(i);
    }
    return undefined;
  }

  readCommit(oid: string): CommitInfo {
    const obj = this.read(oid);
    if (obj.type !== 'commit') throw new Error(`${oid} is a ${obj.type}, not a commit`);
    return parseCommit(obj.content);
  }

  readTree(oid: string): TreeEntry[] {
    const obj = this.read(oid);
    if (obj.type !== 'tree') throw new Error(`${oid} is a ${obj.type}, not a tree`);
    return parseTree(obj.content);
  }

  /** A ref's commit id: loose ref file, then packed-refs; follows a symbolic HEAD. */
  readRef(name = 'refs/heads/main'): string | null {
    return readRefIn(this.gitdir, name);
  }
}

export function readRefIn(gitdir: string, name: string, depth = 0): string | null {
  let text: string | undefined;
  try {
    text = fs.readFileSync(path.join(gitdir, name), 'utf8').trim();
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
  if (text !== undefined) {
    if (text.startsWith('ref: ') && depth < 5) return readRefIn(gitdir, text.slice(5).trim(), depth + 1);
    if (isOid(text)) return text;
    throw new Error(`${path.join(gitdir, name)}: not a commit id: "${text.slice(0, 60)}"`);
  }
  try {
    for (const line of fs.readFileSync(path.join(gitdir, 'packed-refs'), 'utf8').split('\n')) {
      const m = /^([0-9a-f]{40}) (.+)$/.exec(line);
      if (m && m[2] === name) return m[1];
    }
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
  return null;
}

/** A commit's headers and message; throws unless it has a tree and a committer time. */
export function parseCommit(content: Buffer): CommitInfo {
  const text = content.toString('utf8');
  const end = text.indexOf('\n\n');
  const head = end < 0 ? text : text.slice(0, end);
  const info: CommitInfo = { tree: '', parents: [], time: NaN, author: '', message: end < 0 ? '' : text.slice(end + 2) };
  for (const line of head.split('\n')) {
    if (line.startsWith('tree ')) info.tree = line.slice(5);
    else if (line.startsWith('parent ')) info.parents.push(line.slice(7));
    else if (line.startsWith('author ')) info.author = line.slice(7).replace(/ \d+ [+-]\d{4}$/, '');
    else if (line.startsWith('committer ')) {
      const m = / (\d+) [+-]\d{4}$/.exec(line);
      if (m) info.time = Number(m[1]);
    }
  }
  if (!isOid(info.tree)) throw new Error('not a well-formed commit: no tree line');
  if (Number.isNaN(info.time)) throw new Error('not a well-formed commit: no committer time');
  return info;
}

/** A tree's entries in stored order; modes as git writes them (40000 for a directory). */
export function parseTree(content: Buffer): TreeEntry[] {
  const out: TreeEntry[] = [];
  let p = 0;
  while (p < content.length) {
    const sp = content.indexOf(0x20, p);
    const nul = content.indexOf(0, sp);
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
