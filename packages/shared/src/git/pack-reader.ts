import fs from 'node:fs';
import zlib from 'node:zlib';
import crypto from 'node:crypto';
import { PackIndex } from './pack-index.ts';

// Read one git pack through its version-2 .idx: find an object, hand out its stored (still
// compressed) form for re-use in another pack, or inflate it (resolving OFS/REF deltas). Reads use positioned
// reads on one file descriptor, so memory stays in proportion to the objects read, not the pack.

export type ObjectType = 'commit' | 'tree' | 'blob' | 'tag';
const TYPE_BY_CODE: Record<number, ObjectType> = { 1: 'commit', 2: 'tree', 3: 'blob', 4: 'tag' };
const OFS_DELTA = 6;
const REF_DELTA = 7;

export interface GitObject {
  type: ObjectType;
  content: Buffer;
}

export class PackFormatError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PackFormatError';
  }
}

/** Resolves a REF_DELTA base that is not in this pack (thin packs); packs pacha writes are never thin. */
export type BaseLookup = (oid: string) => GitObject | undefined;

export class PackReader {
  readonly packFile: string;
  readonly idxFile: string;
  readonly count: number;
  /** The .idx lookups (find, offsets, crcs, entry ends) are PackIndex's; this class reads entries. */
  private readonly index: PackIndex;
  /** Opened on the first read: a repository may hold many packs that a push only searches. */
  private fdOpen: number | undefined;
  private sizeOfPack: number | undefined;
  /** Small cache of delta bases, so chains are not inflated again and again. */
  private readonly baseCache = new Map<number, GitObject>();

  /** `index`: the pack's .idx when already loaded (else it is read from the file next to the pack). */
  constructor(packFile: string, index?: PackIndex) {
    this.packFile = packFile;
    this.idxFile = index?.idxFile ?? packFile.replace(/\.pack$/, '.idx');
    try {
      this.index = index ?? PackIndex.load(this.idxFile);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code) throw e;
      throw new PackFormatError((e as Error).message);
    }
    this.count = this.index.count;
  }

  private get fd(): number {
    if (this.fdOpen === undefined) {
      this.fdOpen = fs.openSync(this.packFile, 'r');
      this.sizeOfPack = fs.fstatSync(this.fdOpen).size;
    }
    return this.fdOpen;
  }

  private get packSize(): number {
    void this.fd;
    return this.sizeOfPack!;
  }

  close(): void {
    if (this.fdOpen !== undefined) fs.closeSync(this.fdOpen);
    this.fdOpen = undefined;
  }

  /** Checksum of the pack as recorded at the end of the idx. */
  get packChecksumInIdx(): string {
    const idx = this.index.bytes;
    return idx.subarray(idx.length - 40, idx.length - 20).toString('hex');
  }

  oidAt(i: number): string {
    return this.index.oidAt(i);
  }

  *oids(): Iterable<string> {
    for (let i = 0; i < this.count; i++) yield this.oidAt(i);
  }

  /** Index of an object in the idx, or -1. */
  find(oid: string): number {
    return this.index.findHex(oid);
  }

  has(oid: string): boolean {
    return this.find(oid) >= 0;
  }

  offsetAt(i: number): number {
    return this.index.offsetAt(i);
  }

  crcAt(i: number): number {
    return this.index.crcAt(i);
  }

  private entryEnd(offset: number): number {
    return this.index.entryEnd(offset, this.packSize);
  }

  private read(offset: number, length: number): Buffer {
    const buf = Buffer.allocUnsafe(length);
    let got = 0;
    while (got < length) {
      const n = fs.readSync(this.fd, buf, got, length - got, offset + got);
      if (n === 0) throw new PackFormatError(`${this.packFile}: unexpected end at ${offset + got}`);
      got += n;
    }
    return buf;
  }

  /** Parse the entry header at an offset. */
  private header(offset: number, bytes: Buffer): { code: number; size: number; dataStart: number; baseOffset?: number; baseOid?: string } {
    let p = 0;
    let c = bytes[p++];
    const code = (c >> 4) & 7;
    let size = c & 15;
    let shift = 4;
    while (c & 0x80) {
      c = bytes[p++];
      size += (c & 0x7f) * 2 ** shift;
      shift += 7;
    }
    if (code === OFS_DELTA) {
      c = bytes[p++];
      let rel = c & 0x7f;
      while (c & 0x80) {
        c = bytes[p++];
        rel = (rel + 1) * 128 + (c & 0x7f);
      }
      return { code, size, dataStart: p, baseOffset: offset - rel };
    }
    if (code === REF_DELTA) {
      const baseOid = bytes.subarray(p, p + 20).toString('hex');
      return { code, size, dataStart: p + 20, baseOid };
    }
    return { code, size, dataStart: p };
  }

  /**
   * A whole (non-delta) object's stored form: its type, inflated size and the zlib stream as
   * stored, for copying into another pack without inflating; undefined for deltified entries.
   */
  storedEntry(i: number): { type: ObjectType; size: number; data: Buffer } | undefined {
    const offset = this.offsetAt(i);
    const bytes = this.read(offset, this.entryEnd(offset) - offset);
    const h = this.header(offset, bytes);
    const type = TYPE_BY_CODE[h.code];
    if (!type) return undefined;
    return { type, size: h.size, data: bytes.subarray(h.dataStart) };
  }

  /** Object type without inflating (follows delta chains to their base). */
  typeAt(offset: number, lookup?: BaseLookup): ObjectType {
    const bytes = this.read(offset, Math.min(32, this.packSize - offset));
    const h = this.header(offset, bytes);
    if (h.code === OFS_DELTA) return this.typeAt(h.baseOffset!, lookup);
    if (h.code === REF_DELTA) {
      const i = this.find(h.baseOid!);
      if (i >= 0) return this.typeAt(this.offsetAt(i), lookup);
      const b = lookup?.(h.baseOid!);
      if (!b) throw new PackFormatError(`${this.packFile}: delta base ${h.baseOid} missing`);
      return b.type;
    }
    const t = TYPE_BY_CODE[h.code];
    if (!t) throw new PackFormatError(`${this.packFile}: bad object type ${h.code} at ${offset}`);
    return t;
  }

  /** Inflate the object stored at an offset. */
  readAt(offset: number, lookup?: BaseLookup): GitObject {
    const cached = this.baseCache.get(offset);
    if (cached) return cached;
    const bytes = this.read(offset, this.entryEnd(offset) - offset);
    const h = this.header(offset, bytes);
    const data = zlib.inflateSync(bytes.subarray(h.dataStart));
    let obj: GitObject;
    if (h.code === OFS_DELTA || h.code === REF_DELTA) {
      let base: GitObject | undefined;
      if (h.code === OFS_DELTA) base = this.readAt(h.baseOffset!, lookup);
      else {
        const i = this.find(h.baseOid!);
        base = i >= 0 ? this.readAt(this.offsetAt(i), lookup) : lookup?.(h.baseOid!);
      }
      if (!base) throw new PackFormatError(`${this.packFile}: delta base ${h.baseOid} missing`);
      obj = { type: base.type, content: applyDelta(base.content, data) };
      // Keep a few recent bases: delta chains usually share them.
      if (this.baseCache.size > 64) this.baseCache.clear();
      this.baseCache.set(offset, obj);
    } else {
      const t = TYPE_BY_CODE[h.code];
      if (!t) throw new PackFormatError(`${this.packFile}: bad object type ${h.code} at ${offset}`);
      if (data.length !== h.size) throw new PackFormatError(`${this.packFile}: object at ${offset} inflates to ${data.length} bytes, header says ${h.size}`);
      obj = { type: t, content: data };
    }
    return obj;
  }

  /** Read an object by id, or undefined when it is not in this pack. */
  readObject(oid: string, lookup?: BaseLookup): GitObject | undefined {
    const i = this.find(oid);
    return i < 0 ? undefined : this.readAt(this.offsetAt(i), lookup);
  }

  /**
   * Check the pack against its index: trailer checksum, object count, the idx's own checksum and
   * its copy of the pack checksum, and every entry's CRC-32. Returns the problems found.
   */
  verify(): string[] {
    const problems: string[] = [];
    const idx = this.index.bytes;
    const idxSum = crypto.createHash('sha1').update(idx.subarray(0, idx.length - 20)).digest('hex');
    if (idxSum !== idx.subarray(idx.length - 20).toString('hex')) problems.push(`${this.idxFile}: index checksum does not match its content`);
    const hash = crypto.createHash('sha1');
    const chunk = Buffer.allocUnsafe(1 << 20);
    let pos = 0;
    const end = this.packSize - 20;
    while (pos < end) {
      const n = fs.readSync(this.fd, chunk, 0, Math.min(chunk.length, end - pos), pos);
      if (n === 0) break;
      hash.update(chunk.subarray(0, n));
      pos += n;
    }
    const packSum = hash.digest('hex');
    const trailer = this.read(end, 20).toString('hex');
    if (packSum !== trailer) problems.push(`${this.packFile}: pack checksum does not match its content`);
    if (trailer !== this.packChecksumInIdx) problems.push(`${this.idxFile}: records pack checksum ${this.packChecksumInIdx}, pack has ${trailer}`);
    const head = this.read(0, 12);
    if (head.toString('latin1', 0, 4) !== 'PACK') problems.push(`${this.packFile}: no PACK signature`);
    else if (head.readUInt32BE(8) !== this.count) problems.push(`${this.packFile}: holds ${head.readUInt32BE(8)} objects, its index ${this.count}`);
    if (problems.length === 0) {
      for (let i = 0; i < this.count; i++) {
        const offset = this.offsetAt(i);
        if (offset < 12 || offset >= end) {
          problems.push(`${this.idxFile}: object ${this.oidAt(i)} has offset ${offset} outside the pack`);
          continue;
        }
        const bytes = this.read(offset, this.entryEnd(offset) - offset);
        if (zlib.crc32(bytes) !== this.crcAt(i)) problems.push(`${this.packFile}: object ${this.oidAt(i)} fails its CRC-32`);
      }
    }
    return problems;
  }
}

function readVarint(d: Buffer, p: number): [number, number] {
  let v = 0;
  let shift = 0;
  let c: number;
  do {
    c = d[p++];
    v += (c & 0x7f) * 2 ** shift;
    shift += 7;
  } while (c & 0x80);
  return [v, p];
}

/** Apply a git delta (copy/insert instructions) to its base. */
export function applyDelta(base: Buffer, delta: Buffer): Buffer {
  let p = 0;
  let baseSize: number;
  let size: number;
  [baseSize, p] = readVarint(delta, p);
  [size, p] = readVarint(delta, p);
  if (baseSize !== base.length) throw new PackFormatError(`delta expects a base of ${baseSize} bytes, base has ${base.length}`);
  const out = Buffer.allocUnsafe(size);
  let o = 0;
  while (p < delta.length) {
    const op = delta[p++];
    if (op & 0x80) {
      let off = 0;
      let len = 0;
      if (op & 1) off |= delta[p++];
      if (op & 2) off |= delta[p++] << 8;
      if (op & 4) off |= delta[p++] << 16;
      if (op & 8) off += delta[p++] * 2 ** 24;
      if (op & 16) len |= delta[p++];
      if (op & 32) len |= delta[p++] << 8;
      if (op & 64) len |= delta[p++] << 16;
      if (len === 0) len = 0x10000;
      base.copy(out, o, off, off + len);
      o += len;
    } else if (op > 0) {
      delta.copy(out, o, p, p + op);
      o += op;
      p += op;
    } else throw new PackFormatError('delta has a reserved zero instruction');
  }
  if (o !== size) throw new PackFormatError(`delta produced ${o} bytes, expected ${size}`);
  return out;
}
