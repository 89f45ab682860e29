import crypto from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import zlib from 'node:zlib';
import { pipeline } from 'node:stream/promises';
import { ObjectCorruptError, ObjectMissingError, ObjectTypeError, PachaError, PackCorruptError } from '../errors.ts';
import { type CommitInfo, parseCommit } from './commit.ts';
import { type GitObject, type ObjectType, hashObject, isObjectType, isOid, objectHeader } from './objects.ts';
import type { PackArrivalCheck } from './pack-arrival.ts';
import { TYPE_OF_PACK } from './pack-entry.ts';
import { PackIndex, PackIndexCache } from './pack-index.ts';
import { PackReader } from './pack-reader.ts';
import { parsePackedRefs } from './packed-refs.ts';
import { type TreeEntry, parseTree } from './tree.ts';
import { syncDir } from './fsync.ts';

// The one reader of git repositories: every command, the rebuild and the master read objects,
// refs and history through a Repository. Every object it returns has been hashed and matches its
// id, whether it came from a pack (whole or delta) or a loose file. Packs are read by positioned
// reads (PackReader), never loaded whole. When a copy is damaged (does not inflate, does not
// hash to its id, its pack or index lies), the next copy is tried (other entries of a lying
// index, other packs, the loose file): a bad pack never hides a good copy elsewhere. Bad packs
// are remembered (badPacks, reported by `pacha-master verify`) and searched last.

export const MAIN_REF = 'refs/heads/main';

/** Entries of one pack checked ahead, by index position: type (0: none), size, content while kept. */
interface FoundInPack {
  types: Uint8Array;
  sizes: Float64Array;
  contents: (Buffer | undefined)[];
}

/** An object checked ahead of the reads (checkAhead): its type and size, and its content while nobody took it. */
export interface VerifiedObject {
  type: ObjectType;
  size: number;
  content?: Buffer;
}

/** writeBlobTo's read and inflate step. */
const STREAM_CHUNK = 1024 * 1024;

export class Repository {
  readonly gitdir: string;
  /** Pack file -> what is wrong with it, for every pack found damaged while reading. */
  readonly badPacks = new Map<string, string>();
  private good: PackReader[] | undefined;
  private suspect: PackReader[] = [];
  private looseDirs: boolean | undefined;
  private readonly given: PackIndex[] | undefined;
  private readonly indexCache: PackIndexCache | undefined;
  /** A check of the packs as they arrived (the rebuild's), and per pack the entries it found that passed accept(). */
  private ahead: PackArrivalCheck | undefined;
  private readonly verified = new Map<PackReader, FoundInPack>();

  /**
   * `indexes`: the repository's pack indexes when already loaded, not read again; or a cache
   * of indexes kept by the caller across Repository objects (the packs are listed afresh).
   */
  constructor(gitdir: string, indexes?: PackIndex[] | PackIndexCache) {
    this.gitdir = gitdir;
    if (indexes instanceof PackIndexCache) this.indexCache = indexes;
    else this.given = indexes;
  }

  /** Every readable pack, good ones first (opened once; refresh() picks up new ones). */
  packs(): PackReader[] {
    if (!this.good) {
      this.suspect = [];
      if (this.given) this.good = this.given.map((ix) => new PackReader(ix.packFile, ix));
      else {
        const dir = path.join(this.gitdir, 'objects', 'pack');
        let names: string[] = [];
        try {
          names = fs.readdirSync(dir);
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
        }
        const all = new Set(names);
        this.good = [];
        const listed = new Set<string>();
        for (const n of names.filter((x) => x.endsWith('.pack') && all.has(x.slice(0, -5) + '.idx')).sort()) {
          const file = path.join(dir, n);
          const idxFile = file.slice(0, -5) + '.idx';
          listed.add(idxFile);
          try {
            this.good.push(new PackReader(file, this.indexCache?.load(idxFile)));
          } catch (e) {
            if (!(e instanceof PackCorruptError)) throw e;
            this.badPacks.set(file, e.message);
          }
        }
        this.indexCache?.keepOnly(listed);
      }
    }
    return this.suspect.length === 0 ? this.good : [...this.good, ...this.suspect];
  }

  /** A pack written since the repository was opened becomes visible. */
  addPack(idxFile: string): void {
    this.packs();
    this.good!.push(new PackReader(idxFile.replace(/\.idx$/, '.pack'), PackIndex.load(idxFile)));
  }

  /** Read the pack directory again (packs added or removed by another process). */
  refresh(): void {
    this.close();
    this.good = undefined;
    this.suspect = [];
    this.looseDirs = undefined;
  }

  /** Release file descriptors; the loaded indexes stay (reads reopen what they need). */
  close(): void {
    for (const p of this.good ?? []) p.close();
    for (const p of this.suspect) p.close();
  }

  private markBad(p: PackReader, reason: string): void {
    if (!this.badPacks.has(p.packFile)) this.badPacks.set(p.packFile, reason);
    // New arrays, not splice: a read in progress iterates over the old ones.
    if (this.good?.includes(p)) {
      this.good = this.good.filter((x) => x !== p);
      this.suspect = [...this.suspect, p];
    }
  }

  private loosePath(oid: string): string {
    return path.join(this.gitdir, 'objects', oid.slice(0, 2), oid.slice(2));
  }

  private hasLooseDirs(): boolean {
    if (this.looseDirs === undefined) {
      try {
        this.looseDirs = fs.readdirSync(path.join(this.gitdir, 'objects')).some((d) => /^[0-9a-f]{2}$/.test(d));
      } catch {
        this.looseDirs = false;
      }
    }
    return this.looseDirs;
  }

  /** Is some copy of the object stored (not read, not checked)? */
  has(oid: string): boolean {
    const packs = this.packs();
    if (packs.length > 0) {
      const b = Buffer.from(oid, 'hex');
      for (const p of packs) if (p.index.has(b)) return true;
    }
    return this.hasLooseDirs() && fs.existsSync(this.loosePath(oid));
  }

  private readLoose(oid: string): GitObject | undefined {
    let compressed: Buffer;
    try {
      compressed = fs.readFileSync(this.loosePath(oid));
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
      throw e;
    }
    let raw: Buffer;
    try {
      raw = zlib.inflateSync(compressed);
    } catch (e) {
      throw new ObjectCorruptError(oid, `loose object ${oid} is corrupt: ${(e as Error).message}`, false);
    }
    const nul = raw.indexOf(0);
    const [typeName, size] = raw.toString('latin1', 0, nul < 0 ? 0 : nul).split(' ');
    const content = raw.subarray(nul + 1);
    if (nul < 0 || !isObjectType(typeName) || Number(size) !== content.length) throw new ObjectCorruptError(oid, `loose object ${oid} is corrupt (bad header)`, false);
    if (hashObject(typeName, content) !== oid) throw new ObjectCorruptError(oid, `loose object ${oid} is corrupt (content does not match its id)`, true);
    return { type: typeName, content };
  }

  /**
   * Take what `check` finds in this repository's packs (they are complete by now; it may still
   * be going through them): each object is held to the same rule as a read here (checked()),
   * and one that passes is answered from what the check found (verified, takeVerified) instead
   * of being read and inflated again.
   */
  checkAhead(check: PackArrivalCheck): void {
    this.ahead = check;
  }

  /** Stop the check ahead and let go of the contents it found that nobody took. */
  endAhead(): void {
    this.ahead?.close();
    this.ahead = undefined;
    for (const v of this.verified.values()) v.contents.fill(undefined);
  }

  private adoptAhead(): void {
    const batches = this.ahead?.take();
    if (!batches?.length) return;
    const byFile = new Map(this.packs().map((p) => [path.resolve(p.packFile), p]));
    for (const b of batches) {
      const p = byFile.get(b.packFile);
      if (!p) continue;
      let v = this.verified.get(p);
      if (!v) this.verified.set(p, (v = { types: new Uint8Array(p.count), sizes: new Float64Array(p.count), contents: [] }));
      for (let k = 0; k < b.positions.length; k++) {
        const i = b.positions[k];
        if (i >= p.count || v.types[i] !== 0 || !this.accept(p, i, p.index.oidEquals(i, b.digests, k * 20))) continue;
        v.types[i] = b.types[k];
        v.sizes[i] = b.sizes[k];
        if (b.contents) v.contents[i] = b.contents.subarray(b.starts[k], b.starts[k] + b.sizes[k]);
      }
    }
  }

  /**
   * The object as a check ahead found it (checkAhead), when it did: its content, if kept, is
   * handed over once (the caller keeps it; the next call has type and size only).
   */
  takeVerified(oid: string): VerifiedObject | undefined {
    this.adoptAhead();
    if (this.verified.size === 0) return undefined;
    const b = Buffer.from(oid, 'hex');
    for (const p of this.packs()) {
      const v = this.verified.get(p);
      const i = v ? p.index.find(b) : -1;
      if (i < 0 || v!.types[i] === 0) continue;
      const content = v!.contents[i];
      v!.contents[i] = undefined;
      return { type: TYPE_OF_PACK[v!.types[i]]!, size: v!.sizes[i], content };
    }
    return undefined;
  }

  /**
   * The object, checked against its id; undefined when no copy is stored. Throws
   * ObjectCorruptError only when every stored copy is damaged.
   */
  tryRead(oid: string): GitObject | undefined {
    if (this.ahead || this.verified.size > 0) {
      const v = this.takeVerified(oid);
      if (v?.content) return { type: v.type, content: v.content };
    }
    const b = Buffer.from(oid, 'hex');
    let damage: ObjectCorruptError | undefined;
    const lookup = (o: string) => this.tryRead(o);
    for (const p of this.packs()) {
      for (const i of p.index.findAll(b)) {
        let obj: GitObject | undefined;
        try {
          const got = p.readAt(p.index.offsetAt(i), lookup);
          if (this.accept(p, i, hashObject(got.type, got.content) === oid)) obj = got;
        } catch (e) {
          if (!(e instanceof PackCorruptError || e instanceof ObjectCorruptError)) throw e;
          damage ??= new ObjectCorruptError(oid, `object ${oid} in ${p.packFile} is corrupt: ${e.message}`, false);
          this.markBad(p, e.message);
          continue;
        }
        if (obj) return obj;
        damage ??= new ObjectCorruptError(oid, `object ${oid} in ${p.packFile} is corrupt (content does not match its id)`, true);
      }
    }
    try {
      const loose = this.readLoose(oid);
      if (loose) return loose;
    } catch (e) {
      if (!(e instanceof ObjectCorruptError)) throw e;
      damage ??= e;
    }
    if (damage) throw damage;
    return undefined;
  }

  /**
   * The one rule for an object found in a pack at index position i: used only when its content
   * hashed to its id (`matches`); otherwise the pack is marked bad and the caller tries the
   * next copy.
   */
  private accept(p: PackReader, i: number, matches: boolean): boolean {
    if (!matches) this.markBad(p, `object ${p.index.oidAt(i)} does not match its id`);
    return matches;
  }

  read(oid: string): GitObject {
    const obj = this.tryRead(oid);
    if (!obj) throw new ObjectMissingError(oid, this.gitdir);
    return obj;
  }

  /**
   * read(), with a whole packed object inflated on another thread (libdeflate on koffi's, zlib
   * on libuv's pool), so that the caller goes on reading others meanwhile (the rebuild's
   * validation of large blobs). The same rule as tryRead: what it returns hashed to its id; a
   * copy that does not is marked bad, and read() tries the other copies.
   */
  async readAsync(oid: string): Promise<GitObject> {
    const b = Buffer.from(oid, 'hex');
    for (const p of this.packs()) {
      const i = p.index.find(b);
      if (i < 0) continue;
      let got;
      try {
        got = await p.readWholeAsync(i);
      } catch (e) {
        if (!(e instanceof PackCorruptError)) throw e;
        this.markBad(p, e.message);
        continue;
      }
      if (!got) break; // a delta: read() resolves it
      if (this.accept(p, i, hashObject(got.type, got.content) === oid)) return got;
    }
    return this.read(oid);
  }

  readCommit(oid: string): CommitInfo {
    const obj = this.read(oid);
    if (obj.type !== 'commit') throw new ObjectTypeError(oid, obj.type, 'commit');
    return parseCommit(obj.content);
  }

  readTree(oid: string): TreeEntry[] {
    const obj = this.read(oid);
    if (obj.type !== 'tree') throw new ObjectTypeError(oid, obj.type, 'tree');
    return parseTree(obj.content);
  }

  readBlob(oid: string): Buffer {
    const obj = this.read(oid);
    if (obj.type !== 'blob') throw new ObjectTypeError(oid, obj.type, 'blob');
    return obj.content;
  }

  /**
   * The type of a stored object, undefined when none is stored. A whole packed entry's type is
   * read from its header without inflating it (the master hash-checks every entry of a pack
   * before the pack becomes visible); other objects are read and checked whole.
   */
  typeOf(oid: string): GitObject['type'] | undefined {
    const b = Buffer.from(oid, 'hex');
    for (const p of this.packs()) {
      const i = p.index.find(b);
      if (i < 0) continue;
      try {
        const whole = p.wholeEntryAt(i);
        if (whole) return whole.type;
      } catch (e) {
        if (!(e instanceof PackCorruptError)) throw e;
        this.markBad(p, e.message);
        continue;
      }
      break;
    }
    return this.tryRead(oid)?.type;
  }

  /**
   * A whole packed object's stored form (CRC-checked against its index), ready to copy into a
   * new pack; undefined for loose or deltified objects, or a damaged copy (the caller reads
   * those through read(), which checks and falls back, and deflates them itself).
   */
  storedEntry(oid: string): { type: GitObject['type']; size: number; data: Buffer } | undefined {
    const b = Buffer.from(oid, 'hex');
    for (const p of this.packs()) {
      const i = p.index.find(b);
      if (i < 0) continue;
      try {
        return p.storedEntry(i);
      } catch (e) {
        if (!(e instanceof PackCorruptError)) throw e;
        this.markBad(p, e.message);
        return undefined;
      }
    }
    return undefined;
  }

  /**
   * Stream a blob into a file: a path (created or truncated), or a descriptor of a new file the
   * caller keeps open (written from its start). A whole packed blob is inflated as a stream
   * (memory independent of its size) and hashed on the way; a copy that does not match its id
   * is dropped, the file emptied, and the next copy tried. Returns the size.
   */
  async writeBlobTo(oid: string, target: string | number): Promise<number> {
    const b = Buffer.from(oid, 'hex');
    const sink = () => (typeof target === 'number' ? fs.createWriteStream('', { fd: target, autoClose: false, start: 0 }) : fs.createWriteStream(target));
    for (const p of this.packs()) {
      const i = p.index.find(b);
      if (i < 0) continue;
      let whole;
      try {
        whole = p.wholeEntryAt(i);
      } catch (e) {
        if (!(e instanceof PackCorruptError)) throw e;
        this.markBad(p, e.message);
        continue;
      }
      if (!whole) break; // a delta: read whole through read()
      if (whole.type !== 'blob') throw new ObjectTypeError(oid, whole.type, 'blob');
      const hash = crypto.createHash('sha1').update(objectHeader('blob', whole.size));
      let bytes = 0;
      try {
        await pipeline(
          // 1 MiB a step, not 64 KiB read and 16 KiB inflated: each step is a trip to the thread pool and back.
          fs.createReadStream(p.packFile, { start: whole.start, end: whole.end - 1, highWaterMark: STREAM_CHUNK }),
          zlib.createInflate({ chunkSize: STREAM_CHUNK }),
          async function* (src: AsyncIterable<Buffer>) {
            for await (const chunk of src) {
              hash.update(chunk);
              bytes += chunk.length;
              yield chunk;
            }
          },
          sink(),
        );
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code?.startsWith('Z_') !== true) throw e;
        this.markBad(p, `object ${oid} does not inflate: ${(e as Error).message}`);
        if (typeof target === 'number') fs.ftruncateSync(target, 0);
        continue;
      }
      if (bytes === whole.size && hash.digest('hex') === oid) return bytes;
      this.markBad(p, `object ${oid} does not match its id`);
      if (typeof target === 'number') fs.ftruncateSync(target, 0);
    }
    const data = this.readBlob(oid);
    if (typeof target === 'number') {
      for (let off = 0; off < data.length; ) off += fs.writeSync(target, data, off, data.length - off, off);
    } else await fsp.writeFile(target, data);
    return data.length;
  }

  /** A ref's commit id: the loose ref file, then packed-refs; follows a symbolic ref (HEAD). */
  readRef(name = MAIN_REF): string | null {
    return readRefIn(this.gitdir, name);
  }
}

/** A ref of the repository at gitdir; null when it does not exist. */
export function readRefIn(gitdir: string, name: string, depth = 0): string | null {
  let text: string | undefined;
  try {
    text = fs.readFileSync(path.join(gitdir, name), 'utf8').trim();
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code !== 'ENOENT' && code !== 'ENOTDIR') throw e;
  }
  if (text !== undefined) {
    if (text.startsWith('ref: ') && depth < 5) return readRefIn(gitdir, text.slice(5).trim(), depth + 1);
    if (isOid(text)) return text;
    throw new PachaError(`${path.join(gitdir, name)}: not a commit id: "${text.slice(0, 60)}"`);
  }
  let packed: string;
  try {
    packed = fs.readFileSync(path.join(gitdir, 'packed-refs'), 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    return null;
  }
  return parsePackedRefs(packed).get(name) ?? null;
}

// What a new repository holds: the same files locally (initRepo) and on the master (push's
// ensureRemoteRepo), so that native git reads both.
export const REPO_CONFIG = '[core]\n\trepositoryformatversion = 0\n\tfilemode = true\n\tbare = true\n';
export const REPO_HEAD = `ref: ${MAIN_REF}\n`;
export const REPO_DIRS = ['objects/pack', 'refs/heads', 'refs/tags'];

export function isRepo(dir: string): boolean {
  return fs.existsSync(path.join(dir, 'HEAD')) && fs.existsSync(path.join(dir, 'objects'));
}

/** Create a bare repository (HEAD -> refs/heads/main), HEAD written last: a repo with a HEAD is complete. */
export function initRepo(dir: string): void {
  if (fs.existsSync(path.join(dir, 'HEAD'))) return;
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  for (const d of REPO_DIRS) fs.mkdirSync(path.join(dir, d), { recursive: true });
  writeFileDurably(path.join(dir, 'config'), REPO_CONFIG);
  writeFileDurably(path.join(dir, 'HEAD'), REPO_HEAD);
}

/** The commit on refs/heads/main, or null for a repository without snapshots. */
export function readHead(dir: string): string | null {
  if (!isRepo(dir)) return null;
  return readRefIn(dir, MAIN_REF);
}

/** Point refs/heads/main at commit: temp file + fsync + rename, so the ref is never half written. */
export function updateHead(dir: string, commit: string): void {
  if (!isOid(commit)) throw new PachaError(`updateHead: "${commit}" is not a full commit id (40 hex digits)`);
  const ref = path.join(dir, MAIN_REF);
  fs.mkdirSync(path.dirname(ref), { recursive: true });
  writeFileDurably(ref, commit + '\n');
}

/** Write a small file under a temporary name, fsync it, rename it into place, fsync the directory. */
function writeFileDurably(file: string, data: string): void {
  const tmp = `${file}.tmp-${process.pid}`;
  const fd = fs.openSync(tmp, 'w', 0o644);
  try {
    fs.writeSync(fd, data);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  fs.renameSync(tmp, file);
  syncDir(path.dirname(file));
}
