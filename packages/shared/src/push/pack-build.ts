import fs from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';
import crypto from 'node:crypto';
import { TYPE_CODE, type ObjectType } from '../git/pack-reader.ts';
import type { ObjectStore } from './object-store.ts';

// Write one pack (version 2, no deltas) of the selected objects plus its version-2 .idx.
// Objects already stored whole in a local pack are copied as their raw compressed entry (with the
// CRC-32 the local idx recorded), so a push does not deflate again what the snapshot deflated.

export interface BuiltPack {
  packFile: string;
  idxFile: string;
  /** Pack checksum (hex): names the pack, pack-<checksum>.pack. */
  checksum: string;
  objects: number;
  bytes: number;
  /** Entries copied as stored vs deflated here. */
  copied: number;
  deflated: number;
}

function entryHeader(type: ObjectType, size: number): Buffer {
  const bytes: number[] = [];
  let c = (TYPE_CODE[type] << 4) | (size & 15);
  let rest = Math.floor(size / 16);
  while (rest > 0) {
    bytes.push(c | 0x80);
    c = rest & 0x7f;
    rest = Math.floor(rest / 128);
  }
  bytes.push(c);
  return Buffer.from(bytes);
}

class HashingWriter {
  private readonly fd: number;
  readonly hash = crypto.createHash('sha1');
  offset = 0;
  private buf: Buffer[] = [];
  private buffered = 0;
  constructor(file: string) {
    this.fd = fs.openSync(file, 'w', 0o600);
  }
  write(b: Buffer): void {
    this.hash.update(b);
    this.buf.push(b);
    this.buffered += b.length;
    this.offset += b.length;
    if (this.buffered >= 1 << 20) this.flush();
  }
  flush(): void {
    if (this.buffered === 0) return;
    const all = Buffer.concat(this.buf, this.buffered);
    let done = 0;
    while (done < all.length) done += fs.writeSync(this.fd, all, done);
    this.buf = [];
    this.buffered = 0;
  }
  /** Append the trailer checksum, fsync and close; returns the checksum. */
  finish(): Buffer {
    const sum = this.hash.digest();
    this.flush();
    let done = 0;
    while (done < sum.length) done += fs.writeSync(this.fd, sum, done);
    fs.fsyncSync(this.fd);
    fs.closeSync(this.fd);
    this.offset += 20;
    return sum;
  }
}

/** Build pack + idx of `oids` from `store` into `dir` (temporary names chosen by the caller's dir). */
export function buildPack(store: ObjectStore, oids: string[], dir: string, onProgress?: (done: number, total: number) => void): BuiltPack {
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  const tmpPack = path.join(dir, `build-${process.pid}.pack`);
  const w = new HashingWriter(tmpPack);
  const head = Buffer.alloc(12);
  head.write('PACK', 0, 'latin1');
  head.writeUInt32BE(2, 4);
  head.writeUInt32BE(oids.length, 8);
  w.write(head);
  const entries: { oid: Buffer; offset: number; crc: number }[] = [];
  let copied = 0;
  let deflated = 0;
  for (let i = 0; i < oids.length; i++) {
    const oid = oids[i];
    const offset = w.offset;
    const raw = store.rawEntry(oid);
    let crc: number;
    if (raw) {
      w.write(raw.bytes);
      crc = raw.crc32;
      copied++;
    } else {
      const obj = store.read(oid);
      const h = entryHeader(obj.type, obj.content.length);
      const z = zlib.deflateSync(obj.content, { level: 1 });
      w.write(h);
      w.write(z);
      crc = zlib.crc32(z, zlib.crc32(h));
      deflated++;
    }
    entries.push({ oid: Buffer.from(oid, 'hex'), offset, crc });
    if (onProgress && (i & 1023) === 1023) onProgress(i + 1, oids.length);
  }
  const checksum = w.finish();
  const bytes = w.offset;
  const name = `pack-${checksum.toString('hex')}`;
  const packFile = path.join(dir, `${name}.pack`);
  fs.renameSync(tmpPack, packFile);
  const idxFile = path.join(dir, `${name}.idx`);
  fs.writeFileSync(idxFile, buildIdx(entries, checksum), { mode: 0o600 });
  return { packFile, idxFile, checksum: checksum.toString('hex'), objects: oids.length, bytes, copied, deflated };
}

/** Version-2 pack index: fan-out, sorted ids, CRC-32s, offsets (64-bit table past 2 GiB), checksums. */
export function buildIdx(entries: { oid: Buffer; offset: number; crc: number }[], packChecksum: Buffer): Buffer {
  const sorted = [...entries].sort((a, b) => Buffer.compare(a.oid, b.oid));
  const n = sorted.length;
  const large = sorted.filter((e) => e.offset >= 0x80000000);
  const buf = Buffer.alloc(8 + 1024 + n * 28 + large.length * 8 + 40);
  buf.writeUInt32BE(0xff744f63, 0);
  buf.writeUInt32BE(2, 4);
  let p = 8;
  let k = 0;
  for (let b = 0; b < 256; b++) {
    while (k < n && sorted[k].oid[0] <= b) k++;
    buf.writeUInt32BE(k, p);
    p += 4;
  }
  for (const e of sorted) p += e.oid.copy(buf, p);
  for (const e of sorted) p = buf.writeUInt32BE(e.crc >>> 0, p);
  let li = 0;
  for (const e of sorted) {
    if (e.offset >= 0x80000000) p = buf.writeUInt32BE((0x80000000 | li++) >>> 0, p);
    else p = buf.writeUInt32BE(e.offset, p);
  }
  for (const e of large) p = buf.writeBigUInt64BE(BigInt(e.offset), p);
  p += packChecksum.copy(buf, p);
  crypto.createHash('sha1').update(buf.subarray(0, p)).digest().copy(buf, p);
  return buf;
}
