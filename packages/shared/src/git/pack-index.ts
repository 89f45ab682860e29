import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import { PackCorruptError } from '../errors.ts';

// The pack index (.idx version 2): magic, version, a 256-entry fan-out table, the sorted object
// ids, their CRC-32s, 31-bit offsets (large ones in a 64-bit table), the pack's checksum and the
// index's own checksum. Writing one for our packs; reading one to answer "is this object stored
// here, and where?" with a binary search, without parsing the whole file.

const IDX_MAGIC = Buffer.from([0xff, 0x74, 0x4f, 0x63]);

export interface IndexEntry {
  oid: Buffer;
  crc: number;
  offset: number;
}

/** Build an idx v2 file for a pack whose trailing checksum is packSha. */
export function buildIndex(entries: IndexEntry[], packSha: Buffer): Buffer {
  const n = entries.length;
  // Sorted by the ids' first six bytes as numbers, Buffer.compare only for equal ones: a
  // comparator calling into Buffer.compare for every pair took ~140 ms for 56,000 objects.
  const keys = new Float64Array(n);
  for (let i = 0; i < n; i++) keys[i] = entries[i].oid.readUIntBE(0, 6);
  const order = Array.from({ length: n }, (_, i) => i).sort((a, b) => keys[a] - keys[b] || Buffer.compare(entries[a].oid, entries[b].oid));
  const sorted = order.map((i) => entries[i]);
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

/** Look-ups of an entry's end answered by a pass over the offsets before they are sorted once for all. */
const LINEAR_END_LOOKUPS = 4;

/** A read-only view of one .idx v2 file. */
export class PackIndex {
  readonly idxFile: string;
  readonly packFile: string;
  readonly count: number;
  private readonly buf: Buffer;
  private readonly largeOffsets: number;
  private offsets: Float64Array | undefined;
  private sortedOffsets: Float64Array | undefined;
  /** packOrder(), computed once. */
  private order: Uint32Array | undefined;
  private endLookups = 0;

  /** Checks what a lookup relies on (header, fan-out, size); check() checks the rest. */
  constructor(idxFile: string, buf: Buffer) {
    if (buf.length < 8 + 1024 + 40 || !buf.subarray(0, 4).equals(IDX_MAGIC) || buf.readUInt32BE(4) !== 2) {
      throw new PackCorruptError(idxFile, 'not a pack index version 2');
    }
    this.idxFile = idxFile;
    this.packFile = idxFile.replace(/\.idx$/, '.pack');
    this.buf = buf;
    this.count = buf.readUInt32BE(8 + 255 * 4);
    let prev = 0;
    for (let b = 0; b < 256; b++) {
      const v = buf.readUInt32BE(8 + b * 4);
      if (v < prev) throw new PackCorruptError(idxFile, `fan-out table decreases at byte ${b}`);
      prev = v;
    }
    const need = 8 + 1024 + this.count * 28 + 40;
    if (buf.length < need) throw new PackCorruptError(idxFile, `truncated (${buf.length} bytes for ${this.count} objects)`);
    // Offsets with the top bit set point into the table of 64-bit ones (the first byte tells).
    let large = 0;
    for (let p = 8 + 1024 + this.count * 24, end = p + this.count * 4; p < end; p += 4) if (buf[p] & 0x80) large++;
    this.largeOffsets = large;
    if (buf.length !== need + large * 8) throw new PackCorruptError(idxFile, `is ${buf.length} bytes, ${need + large * 8} expected for ${this.count} objects`);
  }

  /**
   * Everything a lookup does not rely on: ids strictly increasing (sorted, no duplicates), each id
   * under its fan-out byte, large offsets where they point, and the index's own checksum.
   */
  check(): string[] {
    const problems: string[] = [];
    const b = this.buf;
    const base = 8 + 1024;
    for (let i = 1; i < this.count; i++) {
      // Compares entry i (source range) with entry i-1 (target range): > 0 when in order.
      const c = b.compare(b, base + (i - 1) * 20, base + i * 20, base + i * 20, base + (i + 1) * 20);
      if (c <= 0) {
        problems.push(c === 0 ? `object ${this.oidAt(i)} is listed twice` : `object ids are not sorted at position ${i}`);
        break;
      }
    }
    for (let i = 0, bucket = 0; i < this.count; i++) {
      const first = b[base + i * 20];
      while (bucket < 256 && b.readUInt32BE(8 + bucket * 4) <= i) bucket++;
      if (first !== bucket) {
        problems.push(`object ${this.oidAt(i)} is not where the fan-out table puts it`);
        break;
      }
    }
    let li = 0;
    for (let i = 0; i < this.count; i++) {
      const v = b.readUInt32BE(base + this.count * 24 + i * 4);
      if (!(v & 0x80000000)) continue;
      if ((v & 0x7fffffff) !== li++) {
        problems.push(`large offset table out of order at object ${this.oidAt(i)}`);
        break;
      }
    }
    const sum = crypto.createHash('sha1').update(b.subarray(0, b.length - 20)).digest();
    if (!sum.equals(b.subarray(b.length - 20))) problems.push('index checksum does not match its content');
    return problems.map((p) => `${this.idxFile}: ${p}`);
  }

  /** The pack's checksum as the index records it (hex). */
  get packChecksum(): string {
    return this.buf.toString('hex', this.buf.length - 40, this.buf.length - 20);
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
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      const c = this.compareAt(oid, mid);
      if (c === 0) return mid;
      if (c < 0) hi = mid;
      else lo = mid + 1;
    }
    return -1;
  }

  /**
   * oid against the id at position i: negative, 0 or positive as oid sorts before, with or
   * after it. Byte by byte in JavaScript (ids differ early): a rebuild looks up every file's
   * blob, and a native Buffer.compare with ranges costs more in its argument checks than the
   * compare itself.
   */
  private compareAt(oid: Buffer, i: number): number {
    const b = this.buf;
    const p = 8 + 1024 + i * 20;
    for (let k = 0; k < 20; k++) {
      const d = oid[k] - b[p + k];
      if (d !== 0) return d;
    }
    return 0;
  }

  has(oid: Buffer): boolean {
    return this.find(oid) >= 0;
  }

  /** Every position listing oid (more than one only in a lying index): try each before giving up. */
  findAll(oid: Buffer): number[] {
    const i = this.find(oid);
    if (i < 0) return [];
    const same = (j: number) => j >= 0 && j < this.count && this.compareAt(oid, j) === 0;
    let lo = i;
    while (same(lo - 1)) lo--;
    const out: number[] = [];
    for (let j = lo; same(j); j++) out.push(j);
    return out;
  }

  /** Is the id at position i the 20 bytes of `digest` at `at`? */
  oidEquals(i: number, digest: Uint8Array, at: number): boolean {
    const b = this.buf;
    const p = 8 + 1024 + i * 20;
    for (let k = 0; k < 20; k++) if (digest[at + k] !== b[p + k]) return false;
    return true;
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
    const p = 8 + 1024 + this.count * 28 + li * 8;
    if (p + 8 > this.buf.length - 40) throw new PackCorruptError(this.idxFile, `large offset ${li} is outside the index`);
    return Number(this.buf.readBigUInt64BE(p));
  }

  /** Every entry's offset, in index order until entryEnd() sorts them. */
  private offsetList(): Float64Array {
    if (this.offsets) return this.offsets;
    // The 32-bit table through the native byte swap, not a read call per entry.
    const at = 8 + 1024 + this.count * 24;
    const raw = new Uint32Array(this.count);
    const bytes = Buffer.from(raw.buffer);
    bytes.set(this.buf.subarray(at, at + this.count * 4));
    if (os.endianness() === 'LE') bytes.swap32();
    const o = Float64Array.from(raw);
    if (this.largeOffsets > 0) for (let i = 0; i < o.length; i++) if (o[i] >= 0x80000000) o[i] = this.offsetAt(i);
    this.offsets = o;
    return o;
  }

  /** Index positions sorted by offset: the order of the entries in the pack. */
  packOrder(): Uint32Array {
    if (!this.order) {
      // offsetList() may be sorted in place by entryEnd(): the offsets in index order afresh.
      const offsets = new Float64Array(this.count);
      for (let i = 0; i < this.count; i++) offsets[i] = this.offsetAt(i);
      this.order = Uint32Array.from({ length: this.count }, (_, i) => i).sort((a, b) => offsets[a] - offsets[b]);
    }
    return this.order;
  }

  /** End of the entry starting at offset: the next entry's offset, or the pack's trailer. */
  entryEnd(offset: number, packSize: number): number {
    const offsets = this.offsetList();
    if (!this.sortedOffsets && this.endLookups++ < LINEAR_END_LOOKUPS) {
      // A process reading a few objects (a snapshot that changed nothing reads two trees) pays
      // one pass over the offsets for each, not the sort of them all.
      let next = packSize - 20;
      for (let i = 0; i < offsets.length; i++) {
        const o = offsets[i];
        if (o > offset && o < next) next = o;
      }
      return next;
    }
    // A typed array sorts numbers natively: some 10x faster than a comparator on 100,000.
    this.sortedOffsets ??= offsets.sort();
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

/**
 * Pack indexes loaded once by a process that opens one repository again and again (the daemon:
 * each snapshot and each push opens it), with what they computed (the sorted offsets). An index
 * does not change under its name (pack-<checksum>.idx); its file's inode, size and mtime are
 * compared all the same, and a changed file is loaded again.
 */
export class PackIndexCache {
  private readonly loaded = new Map<string, { key: string; index: PackIndex }>();

  load(idxFile: string): PackIndex {
    const st = fs.statSync(idxFile);
    const key = `${st.ino}:${st.size}:${st.mtimeMs}`;
    const hit = this.loaded.get(idxFile);
    if (hit !== undefined && hit.key === key) return hit.index;
    const index = PackIndex.load(idxFile);
    this.loaded.set(idxFile, { key, index });
    return index;
  }

  /** Forget the indexes of packs no longer in the repository (merged, removed). */
  keepOnly(idxFiles: ReadonlySet<string>): void {
    for (const f of this.loaded.keys()) if (!idxFiles.has(f)) this.loaded.delete(f);
  }
}
