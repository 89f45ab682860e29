import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';
import git from 'isomorphic-git';
import { PachaError } from '../errors.ts';
import { ObjectStore } from '../git/pack-index.ts';
import { SnapshotReader } from '../snapshot/read.ts';

// Objects of the staged repository for the rebuild. An object stored whole in a pack is read
// with one positioned read from a pack kept open and inflated in memory (a few syscalls per
// file: a rebuild restores thousands of small files); a large blob is streamed to disk by
// SnapshotReader so that memory does not follow file size; loose objects are inflated from
// their file; only deltas go through isomorphic-git (which loads the whole pack). Every object
// is checked against its id.

/** Blobs up to this size are read into memory; larger ones are streamed. */
export const IN_MEMORY_LIMIT = 8 * 1024 * 1024;
const PACK_TYPES: Record<number, ObjectKind> = { 1: 'commit', 2: 'tree', 3: 'blob', 4: 'tag' };

export type ObjectKind = 'commit' | 'tree' | 'blob' | 'tag';

export interface GitObjectData {
  type: ObjectKind;
  data: Buffer;
}

export class BlobSource {
  readonly repoDir: string;
  private readonly store: ObjectStore;
  private readonly fds = new Map<string, number>();
  private readonly packSizes = new Map<string, number>();
  private readonly reader: SnapshotReader;
  private readonly cache: object;

  constructor(repoDir: string, cache: object = {}) {
    this.repoDir = repoDir;
    this.store = new ObjectStore(path.join(repoDir, 'objects'));
    this.reader = new SnapshotReader(repoDir);
    this.cache = cache;
  }

  has(oid: string): boolean {
    return this.store.has(oid);
  }

  /** Content in memory when small and stored whole, else undefined (use writeTo). */
  tryRead(oid: string, size: number): Buffer | undefined {
    if (size > IN_MEMORY_LIMIT) return undefined;
    const o = this.readWholePacked(oid, IN_MEMORY_LIMIT);
    return o?.type === 'blob' ? o.data : undefined;
  }

  /** Any blob, in memory (symlink targets, small files stored as deltas or loose). */
  async readAny(oid: string): Promise<Buffer> {
    const o = await this.readObject(oid);
    if (o.type !== 'blob') throw new PachaError(`object ${oid} is a ${o.type}, not a blob`);
    return o.data;
  }

  /** Any object (commits, trees, blobs); throws when it is missing or corrupt. */
  async readObject(oid: string): Promise<GitObjectData> {
    const packed = this.readWholePacked(oid);
    if (packed) return packed;
    const loose = path.join(this.repoDir, 'objects', oid.slice(0, 2), oid.slice(2));
    if (fs.existsSync(loose)) return this.readLoose(oid, loose);
    const o = await git.readObject({ fs, gitdir: this.repoDir, oid, format: 'content', cache: this.cache });
    return { type: o.type as ObjectKind, data: Buffer.from(o.object as Uint8Array) };
  }

  private readLoose(oid: string, file: string): GitObjectData {
    let raw: Buffer;
    try {
      raw = zlib.inflateSync(fs.readFileSync(file));
    } catch (e) {
      throw new PachaError(`loose object ${oid} is corrupt: ${(e as Error).message}`);
    }
    const nul = raw.indexOf(0);
    const [type, size] = raw.subarray(0, nul).toString().split(' ');
    const data = raw.subarray(nul + 1);
    if (!(type in { commit: 1, tree: 1, blob: 1, tag: 1 }) || Number(size) !== data.length || crypto.createHash('sha1').update(raw).digest('hex') !== oid) {
      throw new PachaError(`loose object ${oid} is corrupt (content does not match its id)`);
    }
    return { type: type as ObjectKind, data };
  }

  /** Stream a blob into a file (created or truncated); returns its size. */
  writeTo(oid: string, file: string): Promise<number> {
    return this.reader.writeBlob(oid, file);
  }

  close(): void {
    for (const fd of this.fds.values()) fs.closeSync(fd);
    this.fds.clear();
  }

  private readWholePacked(oid: string, limit = Infinity): GitObjectData | undefined {
    const loc = this.store.locate(oid);
    if (!loc) return undefined;
    const packFile = loc.pack.packFile;
    let fd = this.fds.get(packFile);
    if (fd === undefined) {
      fd = fs.openSync(packFile, 'r');
      this.fds.set(packFile, fd);
    }
    const offset = loc.pack.offsetAt(loc.index);
    let packSize = this.packSizes.get(packFile);
    if (packSize === undefined) this.packSizes.set(packFile, (packSize = fs.fstatSync(fd).size));
    const end = loc.pack.entryEnd(offset, packSize);
    const raw = Buffer.allocUnsafe(end - offset);
    if (fs.readSync(fd, raw, 0, raw.length, offset) !== raw.length) throw new PachaError(`${packFile}: truncated at object ${oid}`);
    const type = PACK_TYPES[(raw[0] >> 4) & 7];
    if (!type) return undefined; // a delta: let isomorphic-git resolve it
    let size = raw[0] & 15;
    let shift = 4;
    let i = 0;
    while (raw[i] & 0x80) {
      i++;
      size += (raw[i] & 0x7f) * 2 ** shift;
      shift += 7;
    }
    if (size > limit) return undefined; // larger than its metadata said: stream it
    let data: Buffer;
    try {
      data = zlib.inflateSync(raw.subarray(i + 1));
    } catch (e) {
      throw new PachaError(`object ${oid} in ${packFile} is corrupt: ${(e as Error).message}`);
    }
    const id = crypto.createHash('sha1').update(`${type} ${data.length}\0`).update(data).digest('hex');
    if (data.length !== size || id !== oid) throw new PachaError(`object ${oid} in ${packFile} is corrupt (content does not match its id)`);
    return { type, data };
  }
}
