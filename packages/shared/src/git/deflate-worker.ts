import { Worker } from 'node:worker_threads';
import { LIBDEFLATE, libdeflateKoffiFile } from './deflate.ts';

// Deflates batches of objects on a worker thread, so that the snapshot's reading and hashing on
// the main thread overlap the deflate (on a second core). A batch is one buffer of objects back
// to back; it is handed to the worker and the deflated streams come back in one buffer, both
// moved, not copied. One message per batch, not per object: for objects of a few KiB the
// hand-over per object (as zlib's own async calls make it) cost more than the deflate saved.
// The worker also reads files whole, hashes them as blobs and deflates them (readFiles): the
// snapshot's small files are read on two such workers while the main thread only writes the
// pack (the main thread was the bottleneck, the worker idle half of the time). A file it could
// not read as it was (an error, a change while read, no longer regular or small) is reported as
// not read, and the caller reads it itself with PackWriter.addBlobFromFile's rules and messages.

/** One object of a batch: where it lies in the batch buffer and its zlib level. */
export interface BatchItem {
  offset: number;
  length: number;
  level: number;
}

// Plain JavaScript run with `eval`, so the bundled programs need no file beside them. It binds
// libdeflate as deflate.ts does when the main thread could (workerData.koffi: koffi.node's file),
// and deflates each object straight into the batch's output buffer.
const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const zlib = require('node:zlib');
const D = ${JSON.stringify(LIBDEFLATE)};
// Batches done, counted where the main thread sees it at once (its 'message' events wait for
// its event loop, which a thread busy reading files turns only now and then).
const done = new Int32Array(workerData.done);
let ld = null;
if (workerData.koffi) {
  try {
    const m = { exports: {} };
    process.dlopen(m, workerData.koffi);
    const so = m.exports.load(D.soname);
    ld = { alloc: so.func(D.alloc), compress: so.func(D.compress), bound: so.func(D.bound), byLevel: new Map() };
  } catch {
    ld = null;
  }
}
const fs = require('node:fs');
const crypto = require('node:crypto');
const magic = workerData.magic.map((h) => Buffer.from(h, 'hex'));
const looksCompressed = (d) => magic.some((m) => d.length >= m.length && m.every((b, i) => d[i] === b));
// Never block on a fifo or follow a symlink that replaced the file since it was listed.
const OPEN_FLAGS = fs.constants.O_RDONLY | fs.constants.O_NONBLOCK | fs.constants.O_NOFOLLOW;
let out;
let at;
const room = (k) => {
  if (at + k <= out.length) return;
  const bigger = new Uint8Array(Math.max(2 * out.length, at + k));
  bigger.set(out.subarray(0, at));
  out = bigger;
};
/** Deflate src at level onto the end of out; its length. */
function deflateOnto(src, level) {
  let c = null;
  if (ld !== null) {
    c = ld.byLevel.get(level);
    // null: a libdeflate without this level (level 0 before it had one): zlib's.
    if (c === undefined) ld.byLevel.set(level, (c = ld.alloc(level)));
  }
  if (c !== null) {
    room(Number(ld.bound(c, src.length)));
    const len = Number(ld.compress(c, src, src.length, out.subarray(at), out.length - at));
    if (len === 0) throw new Error('libdeflate could not deflate ' + src.length + ' bytes');
    at += len;
    return len;
  }
  const o = zlib.deflateSync(src, { level });
  room(o.length);
  out.set(o, at);
  at += o.length;
  return o.length;
}
const sameFile = (a, b) => a.size === b.size && a.mtimeNs === b.mtimeNs && a.ctimeNs === b.ctimeNs && a.ino === b.ino;
let input = Buffer.allocUnsafeSlow(64 * 1024);
/**
 * One file read whole, or null (the caller reads it again itself). The rules of pack-writer.ts's
 * openRegular, readWhole and statKey, written again here: this string can import nothing, and
 * any doubt ends in null, so the writer's own code decides.
 */
function readOne(file, max) {
  let fd;
  try {
    fd = fs.openSync(file, OPEN_FLAGS);
  } catch {
    return null;
  }
  try {
    const before = fs.fstatSync(fd, { bigint: true });
    const size = Number(before.size);
    if (!before.isFile() || size > max) return null;
    if (input.length < size + 1) input = Buffer.allocUnsafeSlow(Math.max(size + 1, 2 * input.length));
    // One byte more than expected tells a file that grew; a short read is the end of the file.
    let n = 0;
    for (;;) {
      const want = size + 1 - n;
      const r = fs.readSync(fd, input, n, want, n);
      n += r;
      if (r === 0 || r < want) break;
    }
    if (n !== size || !sameFile(before, fs.fstatSync(fd, { bigint: true }))) return null;
    return input.subarray(0, n);
  } catch {
    return null;
  } finally {
    fs.closeSync(fd);
  }
}
parentPort.on('message', (m) => {
  if (m.files !== undefined) return readFiles(m);
  const { id, data, items } = m;
  const n = items.length / 3;
  out = new Uint8Array(Math.max(1024, data.length + (data.length >> 3) + 64 * n));
  at = 0;
  const lengths = new Uint32Array(n);
  for (let i = 0; i < n; i++) lengths[i] = deflateOnto(data.subarray(items[3 * i], items[3 * i] + items[3 * i + 1]), items[3 * i + 2]);
  // Exactly what was made: the main thread holds it until the entries are written.
  const exact = out.slice(0, at);
  out = undefined;
  Atomics.add(done, 0, 1);
  parentPort.postMessage({ id, out: exact, lengths }, [exact.buffer, lengths.buffer]);
});
/** Read, hash (as blobs) and deflate files; lengths[i] is 0 for one not read (a zlib stream is never empty). */
function readFiles({ id, files, level, max }) {
  const n = files.length;
  out = new Uint8Array(1024 * 1024);
  at = 0;
  const lengths = new Uint32Array(n);
  const sizes = new Float64Array(n);
  const oids = new Uint8Array(20 * n);
  for (let i = 0; i < n; i++) {
    const data = readOne(files[i], max);
    if (data === null) continue;
    crypto.createHash('sha1').update('blob ' + data.length + '\\0').update(data).digest().copy(oids, 20 * i);
    sizes[i] = data.length;
    lengths[i] = deflateOnto(data, looksCompressed(data) ? 0 : level);
  }
  const exact = out.slice(0, at);
  out = undefined;
  Atomics.add(done, 0, 1);
  parentPort.postMessage({ id, out: exact, lengths, sizes, oids }, [exact.buffer, lengths.buffer, sizes.buffer, oids.buffer]);
}
`;

/** Files read by the worker (readFiles), in the order asked. */
export interface FilesRead {
  /** Per file: its blob's zlib stream, or null when the worker did not read it as it was. */
  streams: (Buffer | null)[];
  /** Per file: the blob's id (hex) and size, where read. */
  oids: string[];
  sizes: number[];
}

export class DeflateWorker {
  private readonly worker: Worker;
  private readonly waiting = new Map<number, { resolve: ((out: Buffer[]) => void) | ((out: FilesRead) => void); reject: (e: Error) => void }>();
  private nextId = 0;
  private failed: Error | undefined;
  /** Batches the worker has finished (it counts them: see WORKER_SOURCE). */
  private readonly done = new Int32Array(new SharedArrayBuffer(4));

  /** compressedMagic: leading bytes (hex) of data stored at level 0 (PackWriter's looksCompressed). */
  constructor(compressedMagic: readonly string[]) {
    this.worker = new Worker(WORKER_SOURCE, { eval: true, workerData: { koffi: libdeflateKoffiFile(), done: this.done.buffer, magic: compressedMagic } });
    // Never what keeps the process alive; a writer that is neither finished nor aborted leaks nothing.
    this.worker.unref();
    this.worker.on('message', (m: { id: number; out: Uint8Array; lengths: Uint32Array; sizes?: Float64Array; oids?: Uint8Array }) => {
      const w = this.waiting.get(m.id);
      if (!w) return;
      this.waiting.delete(m.id);
      const parts: Buffer[] = [];
      let at = 0;
      for (const n of m.lengths) {
        parts.push(Buffer.from(m.out.buffer, m.out.byteOffset + at, n));
        at += n;
      }
      if (m.oids === undefined) return (w.resolve as (v: Buffer[]) => void)(parts);
      const oids = Buffer.from(m.oids.buffer, m.oids.byteOffset, m.oids.length);
      (w.resolve as (v: FilesRead) => void)({
        streams: parts.map((p) => (p.length > 0 ? p : null)),
        oids: parts.map((_, i) => oids.toString('hex', 20 * i, 20 * i + 20)),
        sizes: [...m.sizes!],
      });
    });
    const fail = (e: Error) => {
      this.failed ??= e;
      for (const w of this.waiting.values()) w.reject(e);
      this.waiting.clear();
    };
    this.worker.on('error', fail);
    this.worker.on('exit', (code) => fail(new Error(`the deflate worker stopped (exit code ${code})`)));
  }

  /**
   * Deflate the objects of `data` (given up: its memory moves to the worker); their zlib streams,
   * in the order of `items`.
   */
  deflate(data: Buffer, items: BatchItem[]): Promise<Buffer[]> {
    if (this.failed) return Promise.reject(this.failed);
    const id = this.nextId++;
    const flat = new Uint32Array(items.length * 3);
    items.forEach((it, i) => flat.set([it.offset, it.length, it.level], i * 3));
    const p = new Promise<Buffer[]>((resolve, reject) => this.waiting.set(id, { resolve, reject }));
    this.worker.postMessage({ id, data, items: flat }, [data.buffer as ArrayBuffer, flat.buffer]);
    return p;
  }

  /**
   * Read whole, hash and deflate (at `level`, or 0 for data that is compressed already) each of
   * `files` that is a regular file of at most `max` bytes and does not change while read.
   */
  readFiles(files: string[], level: number, max: number): Promise<FilesRead> {
    if (this.failed) return Promise.reject(this.failed);
    const id = this.nextId++;
    const p = new Promise<FilesRead>((resolve, reject) => this.waiting.set(id, { resolve, reject }));
    this.worker.postMessage({ id, files, level, max });
    return p;
  }

  /** Batches given and not yet returned. */
  get pending(): number {
    return this.waiting.size;
  }

  /** Batches given that the worker has not finished yet (their results may still be on the way). */
  get backlog(): number {
    return this.nextId - Atomics.load(this.done, 0);
  }

  close(): void {
    void this.worker.terminate();
  }
}
