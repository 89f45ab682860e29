import { Worker } from 'node:worker_threads';
import { LIBDEFLATE, libdeflateKoffiFile } from './deflate.ts';

// Deflates batches of objects on a worker thread, so that the snapshot's reading and hashing on
// the main thread overlap the deflate (on a second core). A batch is one buffer of objects back
// to back; it is handed to the worker and the deflated streams come back in one buffer, both
// moved, not copied. One message per batch, not per object: for objects of a few KiB the
// hand-over per object (as zlib's own async calls make it) cost more than the deflate saved.

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
parentPort.on('message', ({ id, data, items }) => {
  const n = items.length / 3;
  let out = new Uint8Array(Math.max(1024, data.length + (data.length >> 3) + 64 * n));
  let at = 0;
  const room = (k) => {
    if (at + k <= out.length) return;
    const bigger = new Uint8Array(Math.max(2 * out.length, at + k));
    bigger.set(out.subarray(0, at));
    out = bigger;
  };
  const lengths = new Uint32Array(n);
  for (let i = 0; i < n; i++) {
    const src = data.subarray(items[3 * i], items[3 * i] + items[3 * i + 1]);
    const level = items[3 * i + 2];
    let len;
    let c = null;
    if (ld !== null) {
      c = ld.byLevel.get(level);
      // null: a libdeflate without this level (level 0 before it had one): zlib's.
      if (c === undefined) ld.byLevel.set(level, (c = ld.alloc(level)));
    }
    if (c !== null) {
      room(Number(ld.bound(c, src.length)));
      len = Number(ld.compress(c, src, src.length, out.subarray(at), out.length - at));
      if (len === 0) throw new Error('libdeflate could not deflate ' + src.length + ' bytes');
    } else {
      const o = zlib.deflateSync(src, { level });
      room(o.length);
      out.set(o, at);
      len = o.length;
    }
    lengths[i] = len;
    at += len;
  }
  // Exactly what was made: the main thread holds it until the entries are written.
  const exact = out.slice(0, at);
  Atomics.add(done, 0, 1);
  parentPort.postMessage({ id, out: exact, lengths }, [exact.buffer, lengths.buffer]);
});
`;

export class DeflateWorker {
  private readonly worker: Worker;
  private readonly waiting = new Map<number, { resolve: (out: Buffer[]) => void; reject: (e: Error) => void }>();
  private nextId = 0;
  private failed: Error | undefined;
  /** Batches the worker has finished (it counts them: see WORKER_SOURCE). */
  private readonly done = new Int32Array(new SharedArrayBuffer(4));

  constructor() {
    this.worker = new Worker(WORKER_SOURCE, { eval: true, workerData: { koffi: libdeflateKoffiFile(), done: this.done.buffer } });
    // Never what keeps the process alive; a writer that is neither finished nor aborted leaks nothing.
    this.worker.unref();
    this.worker.on('message', (m: { id: number; out: Uint8Array; lengths: Uint32Array }) => {
      const w = this.waiting.get(m.id);
      if (!w) return;
      this.waiting.delete(m.id);
      const parts: Buffer[] = [];
      let at = 0;
      for (const n of m.lengths) {
        parts.push(Buffer.from(m.out.buffer, m.out.byteOffset + at, n));
        at += n;
      }
      w.resolve(parts);
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
