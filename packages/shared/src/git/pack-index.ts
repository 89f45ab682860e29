import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';

// Pack index (.idx version 2): writing one for our packs, and reading existing ones to answer
// "is this object already stored?" and "where is it?" without parsing the whole file.

const IDX_MAGIC = Buffer.from([0xff, 0x74, 0x4f, 0x63]);

export interface IndexEntry {
  oid: Buffer;
  crc: number;
  offset: number;
}

/** Build an idx v2 file for a pack whose trailing checksum is packSha. */
export function buildIndex(entries: IndexEntry[], packSha: Buffer): Buffer {
  const sorted = [...entries].sort((a, b) => Buffer.compare(a.oid, b.oid));
  const n = sorted.length;
  const large = sorted.filter((e) => e.offset >= 0x80000000);
  const buf = Buffer.alloc(8 + 1024 + n * 28 + large.length * 8 + 40);
  IDX_MAGIC.copy(buf, 0);
  buf.writeUInt32BE(2, 4);
  let pos = 8;
  let k = 0;
  for (let b = 0; b < 256; b++) {
    while (k < n && sorted[k].oid[0] <= b) k++;
    buf.writeUInt32BE(k, pos);
    pos += 4;
  }
  for (const e of sorted) {
    e.oid.copy(buf, pos);
    pos += 20;
  }
  for (const e of sorted) {
    buf.writeUInt32BE(e.crc >>> 0, pos);
    pos += 4;
  }
  let li = 0;
  const largePos = pos + n * 4;
  for (const e of sorted) {
    if (e.offset >= 0x80000000) {
      buf.writeUInt32BE((0x80000000 | li) >>> 0, pos);
      buf.writeBigUInt64BE(BigInt(e.offset), largePos + li * 8);
      li++;
    } else buf.writeUInt32BE(e.offset, pos);
    pos += 4;
  }
  pos = largePos + li * 8;
  packSha.copy(buf, pos);
  pos += 20;
  crypto.createHash('sha1').update(buf.subarray(0, pos)).digest().copy(buf, pos);
  return buf;
}

/** A read-only view of one .idx v2 file. */
export class PackIndex {
  readonly idxFile: string;
  readonly packFile: string;
  readonly count: number;
  private readonly buf: Buffer;
  private sortedOffsets: Float64Array | undefined;

  constructor(idxFile: string, buf: Buffer) {
    if (buf.length < 8 + 1024 + 40 || !buf.subarray(0, 4).equals(IDX_MAGIC) || buf.readUInt32BE(4) !== 2) {
      throw new Error(`${idxFile}: not a pack index version 2`);
    }
    this.idxFile = idxFile;
    this.packFile = idxFile.replace(/\.idx$/, '.pack');
    this.buf = buf;
    this.count = buf.readUInt32BE(8 + 255 * 4);
    if (buf.length < 8 + 1024 + this.count * 28 + 40) throw new Error(`${idxFile}: truncated (${buf.length} bytes for ${this.count} objects)`);
  }

  /** The whole .idx file (for checking its own checksum and the pack checksum it records). */
  get bytes(): Buffer {
    return this.buf;
  }

  /** find() for a hex object id. */
  findHex(oid: string): number {
    return this.find(Buffer.from(oid, 'hex'));
  }

  static load(idxFile: string): PackIndex {
    return new PackIndex(idxFile, fs.readFileSync(idxFile));
  }

  /** Position of oid in the sorted table, or -1. */
  find(oid: Buffer): number {
    const first = oid[0];
    let lo = first === 0 ? 0 : this.buf.readUInt32BE(8 + (first - 1) * 4);
    let hi = this.buf.readUInt32BE(8 + first * 4);
    const base = 8 + 1024;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      const c = this.buf.compare(oid, 0, 20, base + mid * 20, base + mid * 20 + 20);
      // buf.compare(target, ...) compares target against buf's range: reversed sign
      if (c === 0) return mid;
      if (c > 0) hi = mid;
      else lo = mid + 1;
    }
    return -1;
  }

  has(oid: Buffer): boolean {
    return this.find(oid) >= 0;
  }

  oidAt(i: number): string {
    const p = 8 + 1024 + i * 20;
    return this.buf.subarray(p, p + 20).toString('hex');
  }

  crcAt(i: number): number {
    return this.buf.readUInt32BE(8 + 1024 + this.count * 20 + i * 4);
  }

  offsetAt(i: number): number {
    const v = this.buf.readUInt32BE(8 + 1024 + this.count * 24 + i * 4);
    if (!(v & 0x80000000)) return v;
    const li = v & 0x7fffffff;
    return Number(this.buf.readBigUInt64BE(8 + 1024 + this.count * 28 + li * 8));
  }

  /** End of the entry starting at offset: the next entry's offset, or the pack's trailer. */
  entryEnd(offset: number, packSize: number): number {
    if (!this.sortedOffsets) {
      // A typed array sorts numbers natively: some 10x faster than a comparator on 100,000.
      const o = new Float64Array(this.count);
      for (let i = 0; i < this.count; i++) o[i] = this.offsetAt(i);
      this.sortedOffsets = o.sort();
    }
    const s = this.sortedOffsets;
    let lo = 0;
    let hi = s.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (s[mid] <= offset) lo = mid + 1;
      else hi = mid;
    }
    return lo < s.length ? s[lo] : packSize - 20;
  }
}

/** Every object a repository holds (packs and loose objects): answers has(oid) quickly. */
export class ObjectStore {
  readonly objectsDir: string;
  readonly packs: PackIndex[];
  private readonly hasLoose: boolean;

  constructor(objectsDir: string) {
    this.objectsDir = objectsDir;
    this.packs = [];
    let names: string[] = [];
    try {
      names = fs.readdirSync(path.join(objectsDir, 'pack'));
    } catch {
      // no pack dir yet
    }
    for (const n of names) {
      if (!n.endsWith('.idx')) continue;
      if (!names.includes(n.replace(/\.idx$/, '.pack'))) continue;
      this.packs.push(PackIndex.load(path.join(objectsDir, 'pack', n)));
    }
    let dirs: string[] = [];
    try {
      dirs = fs.readdirSync(objectsDir);
    } catch {
      // empty repository
    }
    this.hasLoose = dirs.some((d) => /^[0-9a-f]{2}$/.test(d));
  }

  has(oid: string): boolean {
    const b = Buffer.from(oid, 'hex');
    for (const p of this.packs) if (p.has(b)) return true;
    return this.hasLoose && fs.existsSync(path.join(this.objectsDir, oid.slice(0, 2), oid.slice(2)));
  }

  /** The pack holding oid and the entry's position there, if packed. */
  locate(oid: string): { pack: PackIndex; index: number } | undefined {
    const b = Buffer.from(oid, 'hex');
    for (const p of this.packs) {
      const i = p.find(b);
      if (i >= 0) return { pack: p, index: i };
    }
    return undefined;
  }

  /** A newly written pack becomes visible to has(). */
  addPack(idxFile: string): void {
    this.packs.push(PackIndex.load(idxFile));
  }
}
