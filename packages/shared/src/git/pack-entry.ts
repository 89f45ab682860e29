import zlib from 'node:zlib';
import { type ObjectType } from './objects.ts';

// One entry of a pack file: a header (type in 3 bits, inflated size as a little-endian varint),
// for deltas the base (OFS_DELTA: a negative offset; REF_DELTA: the base's id), then a zlib stream.
// Deltas are copy/insert instructions applied to the base (applyDelta).

export const PACK_TYPE: Record<ObjectType, number> = { commit: 1, tree: 2, blob: 3, tag: 4 };
export const TYPE_OF_PACK: Record<number, ObjectType | undefined> = { 1: 'commit', 2: 'tree', 3: 'blob', 4: 'tag' };
export const OFS_DELTA = 6;
export const REF_DELTA = 7;

/** A header is never longer than this (10 size bytes + 20 for a REF_DELTA base). */
export const MAX_ENTRY_HEADER = 32;

export function encodeEntryHeader(type: ObjectType, size: number): Buffer {
  const bytes: number[] = [];
  let c = (PACK_TYPE[type] << 4) | (size & 0x0f);
  let rest = Math.floor(size / 16);
  while (rest > 0) {
    bytes.push(c | 0x80);
    c = rest & 0x7f;
    rest = Math.floor(rest / 128);
  }
  bytes.push(c);
  return Buffer.from(bytes);
}

export interface EntryHeader {
  /** 1-4 whole objects, 6 OFS_DELTA, 7 REF_DELTA. */
  code: number;
  /** Inflated size of the data (for a delta: of the delta instructions). */
  size: number;
  /** Offset of the zlib stream from the start of the entry. */
  dataStart: number;
  /** OFS_DELTA: absolute offset of the base entry. */
  baseOffset?: number;
  /** REF_DELTA: the base object's id. */
  baseOid?: string;
}

/**
 * Decode the header of the entry at `offset` from its first bytes. Throws a plain Error naming
 * what is wrong (the caller says which pack): unknown type, size beyond 2^53, truncated header.
 */
export function decodeEntryHeader(offset: number, bytes: Buffer): EntryHeader {
  let p = 0;
  const next = (): number => {
    if (p >= bytes.length) throw new Error(`entry at ${offset}: truncated header`);
    return bytes[p++];
  };
  let c = next();
  const code = (c >> 4) & 7;
  let size = c & 15;
  let shift = 4;
  while (c & 0x80) {
    c = next();
    if (shift > 49) throw new Error(`entry at ${offset}: size too large`);
    size += (c & 0x7f) * 2 ** shift;
    shift += 7;
  }
  if (code === OFS_DELTA) {
    c = next();
    let rel = c & 0x7f;
    while (c & 0x80) {
      c = next();
      rel = (rel + 1) * 128 + (c & 0x7f);
      if (rel > Number.MAX_SAFE_INTEGER / 256) throw new Error(`entry at ${offset}: delta base offset too large`);
    }
    if (rel <= 0 || rel > offset) throw new Error(`entry at ${offset}: delta base offset ${rel} points outside the pack`);
    return { code, size, dataStart: p, baseOffset: offset - rel };
  }
  if (code === REF_DELTA) {
    if (p + 20 > bytes.length) throw new Error(`entry at ${offset}: truncated header`);
    return { code, size, dataStart: p + 20, baseOid: bytes.toString('hex', p, p + 20) };
  }
  if (TYPE_OF_PACK[code] === undefined) throw new Error(`entry at ${offset}: unknown object type ${code}`);
  return { code, size, dataStart: p };
}

/**
 * Inflate the zlib stream at the start of `input` (at most `max` bytes out): its content and how
 * many bytes of input it took (zlib stops at the stream's end; whatever follows is not read).
 */
export function inflateCounting(input: Buffer, max: number): { content: Buffer; consumed: number } {
  // Node's `info` option (not in its types) returns the engine, whose bytesWritten is the input consumed.
  const r = zlib.inflateSync(input, { info: true, maxOutputLength: max }) as unknown as { buffer: Buffer; engine: { bytesWritten: number } };
  return { content: r.buffer, consumed: r.engine.bytesWritten };
}

function readVarint(d: Buffer, p: number): [number, number] {
  let v = 0;
  let shift = 0;
  let c: number;
  do {
    if (p >= d.length || shift > 49) throw new Error('delta header is truncated or too large');
    c = d[p++];
    v += (c & 0x7f) * 2 ** shift;
    shift += 7;
  } while (c & 0x80);
  return [v, p];
}

/** Apply a git delta (copy/insert instructions) to its base; throws on any instruction outside the bounds. */
export function applyDelta(base: Buffer, delta: Buffer): Buffer {
  let p = 0;
  let baseSize: number;
  let size: number;
  [baseSize, p] = readVarint(delta, p);
  [size, p] = readVarint(delta, p);
  if (baseSize !== base.length) throw new Error(`delta expects a base of ${baseSize} bytes, base has ${base.length}`);
  if (size > 2 ** 31) throw new Error(`delta result of ${size} bytes is too large`);
  const out = Buffer.allocUnsafe(size);
  let o = 0;
  const byte = () => {
    if (p >= delta.length) throw new Error('delta instruction is truncated');
    return delta[p++];
  };
  while (p < delta.length) {
    const op = delta[p++];
    if (op & 0x80) {
      let off = 0;
      let len = 0;
      if (op & 1) off |= byte();
      if (op & 2) off |= byte() << 8;
      if (op & 4) off |= byte() << 16;
      if (op & 8) off += byte() * 2 ** 24;
      if (op & 16) len |= byte();
      if (op & 32) len |= byte() << 8;
      if (op & 64) len |= byte() << 16;
      if (len === 0) len = 0x10000;
      if (off + len > base.length || o + len > size) throw new Error('delta copies outside its base or result');
      base.copy(out, o, off, off + len);
      o += len;
    } else if (op > 0) {
      if (p + op > delta.length || o + op > size) throw new Error('delta inserts past its end');
      delta.copy(out, o, p, p + op);
      o += op;
      p += op;
    } else throw new Error('delta has a reserved zero instruction');
  }
  if (o !== size) throw new Error(`delta produced ${o} bytes, expected ${size}`);
  return out;
}
