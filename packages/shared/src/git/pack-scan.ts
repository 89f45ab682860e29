import zlib from 'node:zlib';
import { hashObject, type ObjectType } from './objects.ts';
import { MAX_ENTRY_HEADER, TYPE_OF_PACK, decodeEntryHeader, inflateCounting } from './pack-entry.ts';

// A pack read front to back as its bytes arrive (as git's index-pack does), without its index:
// each whole entry's header, zlib stream (its end is where inflate stops), CRC-32 and object id.
// The master runs it while a host uploads a pack, so that checking the index later only compares
// it with what was found here. It covers a prefix of the pack: it stops at the first entry it
// does not check itself (a delta, a large object, anything wrong), and from there the entries
// are left to PackReader.verifyEntries, which checks them in full with the index.

/** Entries whose object or zlib stream is larger than this end the scan (left to the full check). */
const SCAN_UP_TO = 1024 * 1024;

export interface ScannedEntries {
  /** Offsets of the entries scanned, in pack order. */
  offsets: number[];
  crcs: number[];
  oids: string[];
  types: ObjectType[];
  /** Where the scan stopped: the start of the first entry not scanned, or the end of the last one when all were. */
  end: number;
  /** Every entry the header counts was scanned. */
  complete: boolean;
}

export class PackScanner {
  /** The object count from the header (null before it arrived). */
  count: number | null = null;
  private pending: Buffer = Buffer.alloc(0);
  /** Absolute offset of pending[0]. */
  private pos = 0;
  private stopped = false;
  private readonly out: ScannedEntries = { offsets: [], crcs: [], oids: [], types: [], end: 12, complete: false };
  private readonly check?: (oid: string, type: ObjectType, content: Buffer) => string | null;

  /** `check`: more rules per object (the master's); an object that breaks one ends the scan there. */
  constructor(check?: (oid: string, type: ObjectType, content: Buffer) => string | null) {
    this.check = check;
  }

  /** The next bytes of the pack, in order (kept until scanned: the caller does not reuse them). */
  push(bytes: Buffer): void {
    if (this.stopped) return;
    this.pending = this.pending.length === 0 ? bytes : Buffer.concat([this.pending, bytes]);
    this.scan(false);
    // A stream that does not end within a bound is a large entry: the rest is left to the full check.
    if (!this.stopped && this.pending.length > 2 * SCAN_UP_TO + MAX_ENTRY_HEADER) this.stop();
  }

  /** All bytes are in: scan what waited for more (the last entries, before the trailer). */
  end(): void {
    if (!this.stopped) this.scan(true);
  }

  result(): ScannedEntries {
    return { ...this.out, end: this.stopped || this.out.complete ? this.out.end : this.pos };
  }

  private stop(): void {
    this.stopped = true;
    this.out.end = this.pos;
    this.pending = Buffer.alloc(0);
  }

  /** `last`: no more bytes come, so an entry's zlib stream is tried even when it may go on past them. */
  private scan(last: boolean): void {
    if (this.count === null) {
      if (this.pending.length < 12) return;
      const v = this.pending.readUInt32BE(4);
      if (this.pending.toString('latin1', 0, 4) !== 'PACK' || (v !== 2 && v !== 3)) return this.stop();
      this.count = this.pending.readUInt32BE(8);
      this.pending = this.pending.subarray(12);
      this.pos = 12;
    }
    while (!this.stopped && this.out.offsets.length < this.count) {
      let h;
      try {
        h = decodeEntryHeader(this.pos, this.pending.subarray(0, MAX_ENTRY_HEADER));
      } catch {
        if (this.pending.length < MAX_ENTRY_HEADER) return; // perhaps only cut short: wait for more
        return this.stop();
      }
      const type = TYPE_OF_PACK[h.code];
      if (!type || h.size > SCAN_UP_TO) return this.stop();
      // Inflated only once the bytes here surely hold its whole stream (zlib's worst case for
      // its size): a try on a stream cut short would be done again with the next bytes.
      if (!last && this.pending.length - h.dataStart < h.size + (h.size >> 10) + 64) return;
      let r: { content: Buffer; consumed: number };
      try {
        r = inflateCounting(this.pending.subarray(h.dataStart), Math.max(h.size, 1));
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'Z_BUF_ERROR') return; // the stream goes on in bytes not yet here
        return this.stop();
      }
      if (r.content.length !== h.size) return this.stop();
      const len = h.dataStart + r.consumed;
      const oid = hashObject(type, r.content);
      if (this.check?.(oid, type, r.content)) return this.stop();
      this.out.offsets.push(this.pos);
      this.out.crcs.push(zlib.crc32(this.pending.subarray(0, len)) >>> 0);
      this.out.oids.push(oid);
      this.out.types.push(type);
      this.pending = this.pending.subarray(len);
      this.pos += len;
      this.out.end = this.pos;
    }
    if (this.out.offsets.length === this.count) {
      this.out.complete = true;
      this.stopped = true;
      this.pending = Buffer.alloc(0);
    }
  }
}
