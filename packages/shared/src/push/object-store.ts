import fs from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';
import crypto from 'node:crypto';
import { PackReader, type GitObject, type ObjectType } from '../git/pack-reader.ts';

// Read-only access to a git repository's objects (loose and packed) and refs, as push and the
// master's admin commands need them: look objects up, parse commits and trees, and hand out the
// raw compressed pack entries so a new pack can reuse them without deflating again.

export interface CommitInfo {
  tree: string;
  parents: string[];
  /** Committer time, seconds since the epoch. */
  time: number;
  author: string;
  message: string;
}

export interface TreeEntry {
  mode: string;
  name: string;
  oid: string;
}

export class MissingObjectError extends Error {
  readonly oid: string;
  constructor(oid: string, where: string) {
    super(`object ${oid} is missing from ${where}`);
    this.name = 'MissingObjectError';
    this.oid = oid;
  }
}

export class ObjectStore {
  readonly gitdir: string;
  private packs: PackReader[] | undefined;

  constructor(gitdir: string) {
    this.gitdir = gitdir;
  }

  /** Open every pack with its index (lazily, once; refresh() picks up new ones). */
  packReaders(): PackReader[] {
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
    let data: Buffer;
    try {
      data = zlib.inflateSync(fs.readFileSync(this.loosePath(oid)));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw e;
    }
    const nul = data.indexOf(0);
    const [type, size] = data.toString('latin1', 0, nul).split(' ');
    const content = data.subarray(nul + 1);
    if (Number(size) !== content.length) throw new Error(`loose object ${oid}: header says ${size} bytes, has ${content.length}`);
    return { type: type as ObjectType, content };
  }

  /** The object, or undefined when the repository does not have it. */
  tryRead(oid: string): GitObject | undefined {
    const lookup = (o: string) => this.tryRead(o);
    for (const p of this.packReaders()) {
      const obj = p.readObject(oid, lookup);
      if (obj) return obj;
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
    if (/^[0-9a-f]{40}$/.test(text)) return text;
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

export function parseCommit(content: Buffer): CommitInfo {
  const text = content.toString('utf8');
  const end = text.indexOf('\n\n');
  const head = end < 0 ? text : text.slice(0, end);
  const info: CommitInfo = { tree: '', parents: [], time: 0, author: '', message: end < 0 ? '' : text.slice(end + 2) };
  for (const line of head.split('\n')) {
    if (line.startsWith('tree ')) info.tree = line.slice(5);
    else if (line.startsWith('parent ')) info.parents.push(line.slice(7));
    else if (line.startsWith('author ')) info.author = line.slice(7).replace(/ \d+ [+-]\d{4}$/, '');
    else if (line.startsWith('committer ')) {
      const m = / (\d+) [+-]\d{4}$/.exec(line);
      if (m) info.time = Number(m[1]);
    }
  }
  if (!/^[0-9a-f]{40}$/.test(info.tree)) throw new Error('commit without a tree line');
  return info;
}

export function parseTree(content: Buffer): TreeEntry[] {
  const out: TreeEntry[] = [];
  let p = 0;
  while (p < content.length) {
    const sp = content.indexOf(0x20, p);
    const nul = content.indexOf(0, sp);
    if (sp < 0 || nul < 0 || nul + 21 > content.length) throw new Error('malformed tree object');
    out.push({
      mode: content.toString('latin1', p, sp),
      name: content.toString('utf8', sp + 1, nul),
      oid: content.toString('hex', nul + 1, nul + 21),
    });
    p = nul + 21;
  }
  return out;
}

/** The id git gives an object: sha1 of "<type> <size>\0<content>". */
export function hashObject(type: ObjectType, content: Buffer): string {
  return crypto.createHash('sha1').update(`${type} ${content.length}\0`).update(content).digest('hex');
}
