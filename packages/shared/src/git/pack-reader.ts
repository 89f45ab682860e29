import crypto from 'node:crypto';
import fs from 'node:fs';
import zlib from 'node:zlib';
import { PackCorruptError } from '../errors.ts';
import { type GitObject, type ObjectType, hashObject } from './objects.ts';
import { inflateExact, inflateExactAsync } from './deflate.ts';
import { MAX_ENTRY_HEADER, OFS_DELTA, REF_DELTA, TYPE_OF_PACK, applyDelta, decodeEntryHeader, inflateCounting, type EntryHeader } from './pack-entry.ts';
import { PackIndex } from './pack-index.ts';
import type { ScannedEntries } from './pack-scan.ts';

// One pack file read through its .idx: positioned reads of single entries on one descriptor, so
// memory follows the objects read, never the pack. It inflates entries (resolving deltas) and
// hands out whole entries as stored for copying into another pack. It does not check ids:
// Repository does, for every object it returns. verify() checks the whole pack.

export interface VerifyOptions {
  /** Refuse deltas. */
  wholeOnly?: boolean;
  /** More rules for each object (the master's well-formedness rules): what is wrong, or null. */
  check?: (oid: string, type: ObjectType, content: Buffer) => string | null;
  /** Told about each object that verified. */
  onObject?: (oid: string, type: ObjectType) => void;
  /**
   * The pack's checksum as already checked by the caller over these very bytes (the master's,
   * when it placed the pack file it owns): not computed again when the trailer says the same.
   */
  checksummed?: string;
}

/** Resolves a REF_DELTA base that is not in this pack. */
export type BaseLookup = (oid: string) => GitObject | undefined;

/** Entries whose zlib stream is larger than this are inflated as a stream by verify(). */
const STREAM_VERIFY_AT = 8 * 1024 * 1024;
const CHUNK = 1024 * 1024;
/**
 * readAt reads entries up to this size into one buffer it keeps; larger ones get their own. An
 * entry that starts where the last one read ended fills the buffer from there (read-ahead).
 */
const SCRATCH = 1024 * 1024;
/** verify() reads the pack through a window of this size. */
const WINDOW = 8 * 1024 * 1024;
/** Delta chains deeper than this are refused (git's default depth is 50). */
const MAX_DELTA_DEPTH = 4096;

export class PackReader {
  readonly packFile: string;
  readonly index: PackIndex;
  /** Opened on the first read: a repository may hold many packs that a push only searches. */
  private fdOpen: number | undefined;
  private sizeOfPack = 0;
  /** Small cache of delta bases, so chains are not inflated again and again. */
  private readonly baseCache = new Map<number, GitObject>();
  /** readAt's reusable read buffer (entries up to SCRATCH bytes), and the bytes of the pack it holds. */
  private scratch: Buffer | undefined;
  private held = { start: 0, end: 0 };
  /** Where the entry readAt read last ends. */
  private lastEnd = -1;

  /** `index`: the pack's .idx when already loaded (else it is read from the file next to the pack). */
  constructor(packFile: string, index?: PackIndex) {
    this.packFile = packFile;
    this.index = index ?? PackIndex.load(packFile.replace(/\.pack$/, '.idx'));
  }

  get count(): number {
    return this.index.count;
  }

  private get fd(): number {
    if (this.fdOpen === undefined) {
      this.fdOpen = fs.openSync(this.packFile, 'r');
      this.sizeOfPack = fs.fstatSync(this.fdOpen).size;
    }
    return this.fdOpen;
  }

  get packSize(): number {
    void this.fd;
    return this.sizeOfPack;
  }

  close(): void {
    if (this.fdOpen !== undefined) fs.closeSync(this.fdOpen);
    this.fdOpen = undefined;
    this.baseCache.clear();
    this.scratch = undefined;
    this.held = { start: 0, end: 0 };
    this.lastEnd = -1;
  }

  private corrupt(message: string): PackCorruptError {
    return new PackCorruptError(this.packFile, message);
  }

  /**
   * `into`: a buffer to read into when it is large enough (the caller uses the bytes before the
   * next read into it), else a new one is allocated.
   */
  private read(offset: number, length: number, into?: Buffer): Buffer {
    if (offset < 0 || length < 0 || offset + length > this.packSize) throw this.corrupt(`read of ${length} bytes at ${offset} is outside the pack`);
    const buf = into && into.length >= length ? into.subarray(0, length) : Buffer.allocUnsafe(length);
    let got = 0;
    while (got < length) {
      const n = fs.readSync(this.fd, buf, got, length - got, offset + got);
      if (n === 0) throw this.corrupt(`unexpected end at ${offset + got}`);
      got += n;
    }
    return buf;
  }

  /** End of the entry at offset (where the next one starts, or the trailer); checked to be inside the pack. */
  entryEnd(offset: number): number {
    if (offset < 12 || offset >= this.packSize - 20) throw this.corrupt(`entry offset ${offset} is outside the pack`);
    return this.index.entryEnd(offset, this.packSize);
  }

  private header(offset: number): EntryHeader {
    const bytes = this.read(offset, Math.min(MAX_ENTRY_HEADER, this.entryEnd(offset) - offset));
    try {
      return decodeEntryHeader(offset, bytes);
    } catch (e) {
      throw this.corrupt((e as Error).message);
    }
  }

  /** Position of oid in the index, or -1. */
  find(oid: string): number {
    return this.index.findHex(oid);
  }

  has(oid: string): boolean {
    return this.find(oid) >= 0;
  }

  /**
   * A whole (non-delta) entry as stored: its type, inflated size and the zlib stream, for copying
   * into another pack without inflating; undefined for a deltified entry. The stored bytes are
   * checked against the index's CRC-32 (cheap; the receiving side checks ids).
   */
  storedEntry(i: number): { type: ObjectType; size: number; data: Buffer } | undefined {
    const offset = this.index.offsetAt(i);
    const h = this.header(offset);
    const type = TYPE_OF_PACK[h.code];
    if (!type) return undefined;
    const bytes = this.read(offset, this.entryEnd(offset) - offset);
    if (zlib.crc32(bytes) >>> 0 !== this.index.crcAt(i)) throw this.corrupt(`object ${this.index.oidAt(i)} fails its CRC-32`);
    return { type, size: h.size, data: bytes.subarray(h.dataStart) };
  }

  /** Where a whole entry's zlib stream lies, for streaming it; undefined for a deltified entry. */
  wholeEntryAt(i: number): { type: ObjectType; size: number; start: number; end: number } | undefined {
    const offset = this.index.offsetAt(i);
    const h = this.header(offset);
    const type = TYPE_OF_PACK[h.code];
    return type ? { type, size: h.size, start: offset + h.dataStart, end: this.entryEnd(offset) } : undefined;
  }

  /**
   * The whole entry at position i of the index, inflated on another thread (inflateExactAsync)
   * while the caller goes on; undefined for a deltified entry. Not checked against any id:
   * Repository does.
   */
  async readWholeAsync(i: number): Promise<GitObject | undefined> {
    const offset = this.index.offsetAt(i);
    // A buffer of its own: the other thread reads it after this returns.
    const entry = this.read(offset, this.entryEnd(offset) - offset);
    let h: EntryHeader;
    try {
      h = decodeEntryHeader(offset, entry.subarray(0, MAX_ENTRY_HEADER));
    } catch (e) {
      throw this.corrupt((e as Error).message);
    }
    const type = TYPE_OF_PACK[h.code];
    if (!type) return undefined;
    if (h.size > 2 ** 31) throw this.corrupt(`entry at ${offset} claims ${h.size} bytes`);
    const content = Buffer.allocUnsafeSlow(h.size);
    try {
      await inflateExactAsync(entry.subarray(h.dataStart), content);
    } catch (e) {
      throw this.corrupt(`entry at ${offset} does not inflate to the ${h.size} bytes its header says: ${(e as Error).message}`);
    }
    return { type, content };
  }

  /**
   * readAt's bytes of an entry, valid until its next call. Entries read one after another in
   * pack order (a rebuild checks every blob in path order, the order they were packed in) come
   * out of one read of SCRATCH bytes, not a system call each.
   */
  private entryBytes(offset: number, length: number): Buffer {
    const sequential = offset === this.lastEnd;
    this.lastEnd = offset + length;
    if (length > SCRATCH) return this.read(offset, length);
    const buf = (this.scratch ??= Buffer.allocUnsafe(SCRATCH));
    const h = this.held;
    // Only a read in pack order is served from what was read ahead; any other reads the file.
    if (!sequential || offset < h.start || offset + length > h.end) {
      const n = sequential ? Math.min(SCRATCH, this.packSize - offset) : length;
      this.read(offset, n, buf);
      this.held = { start: offset, end: offset + n };
    }
    return buf.subarray(offset - this.held.start, offset - this.held.start + length);
  }

  /** Inflate the object stored at an offset (not checked against any id). */
  readAt(offset: number, lookup?: BaseLookup, depth = 0): GitObject {
    const cached = this.baseCache.get(offset);
    if (cached) return cached;
    if (depth > MAX_DELTA_DEPTH) throw this.corrupt(`delta chain at ${offset} is deeper than ${MAX_DELTA_DEPTH}`);
    const end = this.entryEnd(offset);
    // One read for the header and the zlib stream; small entries into a buffer kept for the
    // next one, which the inflate has consumed by then (no allocation per object to collect).
    const entry = this.entryBytes(offset, end - offset);
    let h: EntryHeader;
    try {
      h = decodeEntryHeader(offset, entry.subarray(0, MAX_ENTRY_HEADER));
    } catch (e) {
      throw this.corrupt((e as Error).message);
    }
    if (h.size > 2 ** 31) throw this.corrupt(`entry at ${offset} claims ${h.size} bytes`);
    let data: Buffer;
    try {
      data = inflateExact(entry.subarray(h.dataStart), h.size);
    } catch (e) {
      throw this.corrupt(`entry at ${offset} does not inflate to the ${h.size} bytes its header says: ${(e as Error).message}`);
    }
    if (h.code !== OFS_DELTA && h.code !== REF_DELTA) return { type: TYPE_OF_PACK[h.code]!, content: data };
    let base: GitObject | undefined;
    if (h.code === OFS_DELTA) base = this.readAt(h.baseOffset!, lookup, depth + 1);
    else {
      const i = this.find(h.baseOid!);
      base = i >= 0 ? this.readAt(this.index.offsetAt(i), lookup, depth + 1) : lookup?.(h.baseOid!);
    }
    if (!base) throw this.corrupt(`delta base ${h.baseOid} of the entry at ${offset} is missing`);
    let content: Buffer;
    try {
      content = applyDelta(base.content, data);
    } catch (e) {
      throw this.corrupt(`entry at ${offset}: ${(e as Error).message}`);
    }
    const obj = { type: base.type, content };
    // Keep a few recent bases: delta chains usually share them.
    if (this.baseCache.size > 64) this.baseCache.clear();
    this.baseCache.set(offset, obj);
    return obj;
  }

  /**
   * Check the whole pack against its index, as git's verify-pack and fsck do: signature, version,
   * object count, trailer checksum, the index's own checksum and its copy of the pack checksum,
   * ids sorted without duplicates, every entry's CRC-32, entries tiling the pack with no gap, and
   * every object inflating and hashing to the id the index gives it. `check(type, content)` is
   * called on each object (the master's well-formedness rules). Returns the problems found.
   */
  async verify(opts: VerifyOptions = {}): Promise<string[]> {
    const problems = this.verifyWhole(opts);
    return problems.length > 0 ? problems : this.verifyEntries(opts);
  }

  /**
   * The checks of verify() on the pack as a whole (everything but the entries): sizes, signature,
   * version, count, trailer checksum, the index's own checks. The entries are checked by
   * verifyEntries(), in one call or in ranges (the master spreads them over threads).
   */
  verifyWhole(opts: VerifyOptions = {}): string[] {
    const problems: string[] = [];
    try {
      void this.fd;
    } catch (e) {
      return [`${this.packFile}: cannot be opened: ${(e as Error).message}`];
    }
    if (this.packSize < 32) return [`${this.packFile}: too short to be a pack (${this.packSize} bytes)`];
    problems.push(...this.index.check());
    const head = this.read(0, 12);
    if (head.toString('latin1', 0, 4) !== 'PACK') problems.push(`${this.packFile}: no PACK signature`);
    else if (head.readUInt32BE(4) !== 2 && head.readUInt32BE(4) !== 3) problems.push(`${this.packFile}: pack version ${head.readUInt32BE(4)} (accepted: 2 or 3)`);
    else if (head.readUInt32BE(8) !== this.count) problems.push(`${this.packFile}: holds ${head.readUInt32BE(8)} objects, its index ${this.count}`);
    const end = this.packSize - 20;
    const trailer = this.read(end, 20).toString('hex');
    if (opts.checksummed !== trailer) {
      const hash = crypto.createHash('sha1');
      const chunk = Buffer.allocUnsafe(CHUNK);
      for (let pos = 0; pos < end; ) {
        const n = fs.readSync(this.fd, chunk, 0, Math.min(chunk.length, end - pos), pos);
        if (n === 0) break;
        hash.update(chunk.subarray(0, n));
        pos += n;
      }
      if (hash.digest('hex') !== trailer) problems.push(`${this.packFile}: pack checksum does not match its content`);
    }
    if (trailer !== this.index.packChecksum) problems.push(`${this.index.idxFile}: records pack checksum ${this.index.packChecksum}, the pack has ${trailer}`);
    if (this.count === 0 && end !== 12) problems.push(`${this.packFile}: ${end - 12} bytes of entries its index does not list`);
    return problems;
  }

  /**
   * Check the entries at positions [from, to) in pack order (by offset), after verifyWhole():
   * they tile the pack (the first right after the header, each where the one before ends), and
   * each passes its CRC-32, inflates and hashes to its id, and passes `check`.
   */
  async verifyEntries(opts: VerifyOptions = {}, from = 0, to = this.count): Promise<string[]> {
    const problems: string[] = [];
    const end = this.packSize - 20;
    const order = this.index.packOrder();
    // Where the first entry of the range must start: right after the header, or where the entry before it ends.
    let expect = from === 0 ? 12 : this.entryEnd(this.index.offsetAt(order[from - 1]));
    let n = 0;
    // Entries are read through one window of the pack, in order: a read per window, not per entry.
    const win: { start: number; buf: Buffer } = { start: 0, buf: Buffer.alloc(0) };
    const slice = (a: number, b: number): Buffer => {
      if (a < win.start || b > win.start + win.buf.length) {
        win.start = a;
        win.buf = this.read(a, Math.min(end, Math.max(b, a + WINDOW)) - a);
      }
      return win.buf.subarray(a - win.start, b - win.start);
    };
    for (let k = from; k < Math.min(to, this.count); k++) {
      const i = order[k];
      // A long verification (the master's, of a large pack) lets other requests in between.
      if ((++n & 255) === 0) await new Promise<void>((resolve) => setImmediate(resolve));
      const oid = this.index.oidAt(i);
      const offset = this.index.offsetAt(i);
      if (offset !== expect) {
        problems.push(`${this.index.idxFile}: object ${oid} at offset ${offset}, ${offset < expect ? 'overlapping the entry before' : `a gap after ${expect}`}`);
        return problems;
      }
      const entryEnd = this.entryEnd(offset);
      expect = entryEnd;
      const p = await this.verifyEntry(i, oid, offset, entryEnd, opts, slice);
      if (p) problems.push(`${this.packFile}: object ${oid}: ${p}`);
      if (problems.length >= 20) {
        problems.push(`${this.packFile}: more problems not listed`);
        return problems;
      }
    }
    return problems;
  }

  /**
   * After verifyWhole(): compare the index with the entries a PackScanner found in these very
   * bytes (each one inflated, hashed and checked there): same offsets in the same order, CRC-32s
   * and ids. Returns the problems and the pack-order position from which the entries are still
   * to be checked with verifyEntries() (the count when the scan covered them all).
   */
  matchScanned(scanned: ScannedEntries): { problems: string[]; from: number } {
    const order = this.index.packOrder();
    const n = scanned.offsets.length;
    if (n > this.count) return { problems: [`${this.index.idxFile}: lists ${this.count} objects, the pack holds more`], from: this.count };
    for (let k = 0; k < n; k++) {
      const i = order[k];
      const oid = this.index.oidAt(i);
      const offset = this.index.offsetAt(i);
      if (offset !== scanned.offsets[k]) return { problems: [`${this.index.idxFile}: object ${oid} at offset ${offset}, the pack has an entry at ${scanned.offsets[k]}`], from: this.count };
      if (this.index.crcAt(i) !== scanned.crcs[k]) return { problems: [`${this.packFile}: object ${oid}: fails its CRC-32`], from: this.count };
      if (scanned.oids[k] !== oid) return { problems: [`${this.packFile}: object ${oid}: content hashes to ${scanned.oids[k]}`], from: this.count };
    }
    // The entries not scanned start where the scan stopped; when it covered all, they end at the trailer.
    if (n < this.count && this.index.offsetAt(order[n]) !== scanned.end) {
      return { problems: [`${this.index.idxFile}: object ${this.index.oidAt(order[n])} at offset ${this.index.offsetAt(order[n])}, the entry before ends at ${scanned.end}`], from: this.count };
    }
    if (n === this.count && scanned.end !== this.packSize - 20) return { problems: [`${this.packFile}: ${this.packSize - 20 - scanned.end} bytes after the last entry, before the trailer`], from: this.count };
    return { problems: [], from: n };
  }

  private async verifyEntry(
    i: number,
    oid: string,
    offset: number,
    end: number,
    opts: VerifyOptions,
    slice: (from: number, to: number) => Buffer,
  ): Promise<string | null> {
    let h: EntryHeader;
    try {
      h = decodeEntryHeader(offset, slice(offset, Math.min(end, offset + MAX_ENTRY_HEADER)));
    } catch (e) {
      return (e as Error).message;
    }
    const whole = TYPE_OF_PACK[h.code];
    if (!whole && opts.wholeOnly) return 'is a delta (accepted here: whole objects only)';
    const large = end - offset > STREAM_VERIFY_AT || h.size > STREAM_VERIFY_AT;
    // The CRC covers the entry as stored (header and zlib stream).
    let crc = 0;
    if (large) {
      for (let pos = offset; pos < end; ) {
        const n = Math.min(CHUNK, end - pos);
        crc = zlib.crc32(this.read(pos, n), crc);
        pos += n;
      }
    } else crc = zlib.crc32(slice(offset, end));
    if (crc >>> 0 !== this.index.crcAt(i)) return 'fails its CRC-32';
    if (whole && large) {
      const r = await this.hashStream(offset + h.dataStart, end, whole, h.size);
      if (typeof r === 'string') return r;
      if (r.oid !== oid) return `content hashes to ${r.oid}`;
      if (opts.check && whole !== 'blob') return 'is a large non-blob object';
      opts.onObject?.(oid, whole);
      return null;
    }
    let obj: GitObject;
    try {
      if (whole) {
        const stream = slice(offset + h.dataStart, end);
        const { content, consumed } = inflateCounting(stream, Math.max(h.size, 1));
        if (content.length !== h.size) return `inflates to ${content.length} bytes, its header says ${h.size}`;
        // As git's index-pack: an entry is its header and its zlib stream, nothing after (PackScanner reads it so).
        if (consumed !== stream.length) return `has ${stream.length - consumed} bytes after its zlib stream`;
        obj = { type: whole, content };
      } else obj = this.readAt(offset, undefined);
    } catch (e) {
      return `does not read: ${(e as Error).message}`;
    }
    const got = hashObject(obj.type, obj.content);
    if (got !== oid) return `content hashes to ${got}`;
    const bad = opts.check?.(oid, obj.type, obj.content) ?? null;
    if (bad === null) opts.onObject?.(oid, obj.type);
    return bad;
  }

  /** Inflate [start, end) as a stream and hash it as an object of `type`. */
  private hashStream(start: number, end: number, type: ObjectType, size: number): Promise<{ oid: string } | string> {
    return hashStoredStream((pos, n) => this.read(pos, n), start, end, type, size);
  }
}

/**
 * The object whose zlib stream lies at [start, end) of a pack, inflated as a stream (memory
 * independent of its size) and hashed as an object of `type` and `size`: its id, or what is
 * wrong. `read(pos, n)`: n bytes of the pack at pos.
 */
export async function hashStoredStream(read: (pos: number, n: number) => Buffer, start: number, end: number, type: ObjectType, size: number): Promise<{ oid: string } | string> {
  const hash = crypto.createHash('sha1').update(`${type} ${size}\0`);
  let n = 0;
  // Output by the MiB: zlib's default of 16 KiB is a trip to the thread pool and back for each.
  const inflate = zlib.createInflate({ chunkSize: CHUNK });
  const done = new Promise<void>((resolve, reject) => {
    inflate.on('data', (d: Buffer) => {
      n += d.length;
      hash.update(d);
    });
    inflate.on('end', resolve);
    inflate.on('error', reject);
  });
  try {
    for (let pos = start; pos < end; ) {
      const piece = read(pos, Math.min(CHUNK, end - pos));
      pos += piece.length;
      if (!inflate.write(piece)) await new Promise((r) => inflate.once('drain', r));
    }
    inflate.end();
    await done;
  } catch (e) {
    inflate.destroy();
    return `does not inflate: ${(e as Error).message}`;
  }
  if (n !== size) return `inflates to ${n} bytes, its header says ${size}`;
  return { oid: hash.digest('hex') };
}
