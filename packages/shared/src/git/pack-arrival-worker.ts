import fs from 'node:fs';
import os from 'node:os';
import zlib from 'node:zlib';
import { parentPort, workerData } from 'node:worker_threads';
import { inflateInto } from './deflate.ts';
import { hashObjectDigest, type ObjectType } from './objects.ts';
import type { ArrivalFound, ArrivalOptions, ArrivalReply, ArrivalRequest } from './pack-arrival.ts';
import { MAX_ENTRY_HEADER, PACK_TYPE, TYPE_OF_PACK, decodeEntryHeader } from './pack-entry.ts';
import { PackIndex } from './pack-index.ts';
import { hashStoredStream } from './pack-reader.ts';

// The thread of pack-arrival.ts: goes through each pack in pack order as its bytes arrive,
// reading the entries from the file (never past what the main thread says is written), and
// reports each whole entry that passes its CRC-32 and inflates to the size its header says,
// with its id as hashed. The ids are compared with the index by the Repository, not here.

/** Steps of nice this thread takes below the process. */
const NICER = 10;
/** Pack bytes read and inflated in one run (one message back). */
const RUN_BYTES = 1024 * 1024;

const opts = workerData as ArrivalOptions;

// This thread is to use what the download leaves idle, not to slow it down: ten steps of nice
// below the rest of the process (the download on the main thread, and an sshd on the same machine
// when the master is local). On Linux a thread has a priority of its own, set through its thread
// id (/proc/thread-self names it).
try {
  const tid = Number(fs.readlinkSync('/proc/thread-self').split('/').pop());
  os.setPriority(tid, Math.min(os.constants.priority.PRIORITY_LOW, os.getPriority(tid) + NICER));
} catch {
  // elsewhere (or not allowed): the same priority as the rest
}

interface Pack {
  id: number;
  packFile: string;
  size: number;
  arrived: number;
  fd: number;
  index: PackIndex | undefined;
  /** Index positions in pack order, and their offsets. */
  order: Uint32Array;
  offsets: Float64Array;
  /** The next entry (in pack order) to check. */
  next: number;
}

const packs: Pack[] = [];
/** settle requests waiting for the work on what arrived to end. */
const settling: number[] = [];
let kept = 0;
let running = false;
let readBuf = Buffer.allocUnsafe(RUN_BYTES);
let scratch = Buffer.allocUnsafeSlow(0);

function openPack(m: Extract<ArrivalRequest, { kind: 'pack' }>): Pack {
  const p: Pack = { id: m.id, packFile: m.packFile, size: m.size, arrived: 0, fd: -1, index: undefined, order: new Uint32Array(0), offsets: new Float64Array(0), next: 0 };
  try {
    const index = PackIndex.load(m.idxFile);
    p.order = index.packOrder();
    p.offsets = Float64Array.from(p.order, (i) => index.offsetAt(i));
    p.fd = fs.openSync(m.packFile, 'r');
    p.index = index;
  } catch {
    // An index that does not load: this pack is read the ordinary way.
  }
  return p;
}

/** Where the entry at pack-order k ends: where the next begins, or the trailer. */
function end(p: Pack, k: number): number {
  return k + 1 < p.offsets.length ? p.offsets[k + 1] : p.size - 20;
}

function ready(p: Pack): boolean {
  return p.index !== undefined && p.next < p.offsets.length && end(p, p.next) <= p.arrived;
}

function readAt(p: Pack, pos: number, n: number, into?: Buffer): Buffer {
  if (n < 0 || pos + n > p.arrived) throw new Error(`read of ${n} bytes at ${pos} is past what arrived`);
  const buf = into && into.length >= n ? into.subarray(0, n) : Buffer.allocUnsafe(n);
  for (let got = 0; got < n; ) {
    const r = fs.readSync(p.fd, buf, got, n - got, pos + got);
    if (r === 0) throw new Error(`the pack ends at ${pos + got}`);
    got += r;
  }
  return buf;
}

function report(m: ArrivalFound): void {
  parentPort!.postMessage(m satisfies ArrivalReply, m.contents ? [m.contents] : []);
}

/** One large whole entry (never kept): CRC-32 and id as it streams through inflate. */
async function streamed(p: Pack, k: number, type: ObjectType, size: number, dataStart: number): Promise<void> {
  const offset = p.offsets[k];
  let crc = zlib.crc32(readAt(p, offset, dataStart));
  const r = await hashStoredStream(
    (pos, n) => {
      const piece = readAt(p, pos, n);
      crc = zlib.crc32(piece, crc);
      return piece;
    },
    offset + dataStart,
    end(p, k),
    type,
    size,
  );
  if (typeof r === 'string' || crc >>> 0 !== p.index!.crcAt(p.order[k])) return;
  report({ kind: 'found', id: p.id, positions: Uint32Array.of(p.order[k]), types: Uint8Array.of(PACK_TYPE[type]), sizes: Float64Array.of(size), digests: Buffer.from(r.oid, 'hex'), starts: Float64Array.of(0) });
}

/** One large whole entry, inflated into memory of its own that is let go of at once. */
function whole(p: Pack, k: number, type: ObjectType, size: number, dataStart: number): void {
  const offset = p.offsets[k];
  const entry = readAt(p, offset, end(p, k) - offset);
  if (zlib.crc32(entry) >>> 0 !== p.index!.crcAt(p.order[k])) return;
  const content = Buffer.allocUnsafeSlow(size);
  inflateInto(entry.subarray(dataStart), content);
  report({ kind: 'found', id: p.id, positions: Uint32Array.of(p.order[k]), types: Uint8Array.of(PACK_TYPE[type]), sizes: Float64Array.of(size), digests: hashObjectDigest(type, content), starts: Float64Array.of(0) });
}

/** The next run of entries of p whose bytes are here. */
async function run(p: Pack): Promise<void> {
  const k0 = p.next;
  const start = p.offsets[k0];
  const head = decodeEntryHeader(start, readAt(p, start, Math.min(MAX_ENTRY_HEADER, end(p, k0) - start)));
  const first = TYPE_OF_PACK[head.code];
  if (first && head.size > opts.keepEach) {
    p.next = k0 + 1;
    // Inflated whole (libdeflate, several times zlib's stream) while the budget has room for it
    // for a moment; never kept. Else as a stream.
    if (kept + head.size <= opts.keep && head.size <= 2 ** 31) whole(p, k0, first, head.size, head.dataStart);
    else await streamed(p, k0, first, head.size, head.dataStart);
    return;
  }
  let to = k0 + 1;
  while (to < p.offsets.length && end(p, to) <= p.arrived && end(p, to) - start <= RUN_BYTES) to++;
  // One buffer for the runs' bytes (what is kept is inflated out of it): a run is RUN_BYTES, or one entry of at most about keepEach.
  if (readBuf.length < end(p, to - 1) - start) readBuf = Buffer.allocUnsafe(end(p, to - 1) - start);
  const bytes = readAt(p, start, end(p, to - 1) - start, readBuf);
  const items: { pos: number; type: ObjectType; size: number; stream: Buffer }[] = [];
  let total = 0;
  for (let k = k0; k < to; k++) {
    const entry = bytes.subarray(p.offsets[k] - start, end(p, k) - start);
    let h;
    try {
      h = decodeEntryHeader(p.offsets[k], entry.subarray(0, MAX_ENTRY_HEADER));
    } catch {
      continue;
    }
    const type = TYPE_OF_PACK[h.code];
    if (!type) continue; // a delta
    if (h.size > opts.keepEach) {
      to = k; // streamed, next
      break;
    }
    if (zlib.crc32(entry) >>> 0 !== p.index!.crcAt(p.order[k])) continue;
    items.push({ pos: p.order[k], type, size: h.size, stream: entry.subarray(h.dataStart) });
    total += h.size;
  }
  p.next = to;
  if (items.length === 0) return;
  const keep = kept + total <= opts.keep;
  if (keep) kept += total;
  else if (scratch.length < total) scratch = Buffer.allocUnsafeSlow(total);
  const out = keep ? Buffer.allocUnsafeSlow(total) : scratch;
  const positions = new Uint32Array(items.length);
  const types = new Uint8Array(items.length);
  const sizes = new Float64Array(items.length);
  const starts = new Float64Array(items.length);
  const digests = Buffer.allocUnsafeSlow(items.length * 20);
  let n = 0;
  let at = 0;
  for (const it of items) {
    const content = out.subarray(at, at + it.size);
    try {
      inflateInto(it.stream, content);
    } catch {
      continue; // left to the ordinary read, which names what is wrong
    }
    positions[n] = it.pos;
    types[n] = PACK_TYPE[it.type];
    sizes[n] = it.size;
    starts[n] = at;
    hashObjectDigest(it.type, content).copy(digests, n * 20);
    n++;
    at += it.size;
  }
  const m: ArrivalFound = { kind: 'found', id: p.id, positions: positions.subarray(0, n), types: types.subarray(0, n), sizes: sizes.subarray(0, n), digests: digests.subarray(0, n * 20), starts: starts.subarray(0, n) };
  if (keep) m.contents = out.buffer as ArrayBuffer;
  report(m);
}

async function work(): Promise<void> {
  if (running) return;
  running = true;
  try {
    for (let p = packs.find(ready); p; p = packs.find(ready)) {
      const k = p.next;
      try {
        await run(p);
      } catch {
        // Whatever went wrong here is found again, and named, by the ordinary read.
      }
      if (p.next === k) p.next = k + 1;
      if (p.next >= p.offsets.length) closePack(p);
      // Let the main thread's news in (more bytes arrived).
      await new Promise<void>((resolve) => setImmediate(resolve));
    }
  } finally {
    running = false;
  }
  for (const token of settling.splice(0)) parentPort!.postMessage({ kind: 'settled', token } satisfies ArrivalReply);
}

function closePack(p: Pack): void {
  if (p.fd >= 0) fs.closeSync(p.fd);
  p.fd = -1;
  p.index = undefined;
}

parentPort!.on('message', (m: ArrivalRequest) => {
  if (m.kind === 'stop') {
    for (const p of packs) if (p) closePack(p);
    parentPort!.postMessage({ kind: 'stopped' } satisfies ArrivalReply);
    process.exit(0);
  }
  if (m.kind === 'settle') settling.push(m.token);
  else if (m.kind === 'pack') packs[m.id] = openPack(m);
  else if (packs[m.id]) packs[m.id].arrived = Math.min(m.bytes, packs[m.id].size);
  void work();
});
