import { Worker } from 'node:worker_threads';

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

// Plain JavaScript run with `eval`, so the bundled programs need no file beside them.
const WORKER_SOURCE = `
const { parentPort } = require('node:worker_threads');
const zlib = require('node:zlib');
parentPort.on('message', ({ id, data, items }) => {
  const outs = [];
  let total = 0;
  for (let i = 0; i < items.length; i += 3) {
    const o = zlib.deflateSync(data.subarray(items[i], items[i] + items[i + 1]), { level: items[i + 2] });
    outs.push(o);
    total += o.length;
  }
  const out = new Uint8Array(total);
  const lengths = new Uint32Array(outs.length);
  let at = 0;
  for (let i = 0; i < outs.length; i++) {
    out.set(outs[i], at);
    at += outs[i].length;
    lengths[i] = outs[i].length;
  }
  parentPort.postMessage({ id, out, lengths }, [out.buffer, lengths.buffer]);
});
`;

export class DeflateWorker {
  private readonly worker: Worker;
  private readonly waiting = new Map<number, { resolve: (out: Buffer[]) => void; reject: (e: Error) => void }>();
  private nextId = 0;
  private failed: Error | undefined;

  constructor() {
    this.worker = new Worker(WORKER_SOURCE, { eval: true });
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

  close(): void {
    void this.worker.terminate();
  }
}
