import path from 'node:path';
import { Worker } from 'node:worker_threads';
import { workerFile } from '../worker-file.ts';
import type { ObjectType } from './objects.ts';

// A check of packs as they arrive (the rebuild's download of the master's packs): on another
// thread (pack-arrival-worker.ts), each whole entry of a pack whose .idx is already here is
// read as soon as its bytes are, CRC-checked against the index, inflated and hashed. What it
// found goes to the Repository, which checks each hash against the id the index gives that
// entry (Repository.checkedAhead, the same rule as every read) before anything uses it.
// Deltas, entries that fail and packs without an index are simply not reported: they are read
// and checked the ordinary way. The contents come back (moved, not copied) up to a budget.

/** What the thread found in one run of entries of a pack. */
export interface FoundBatch {
  /** The pack file, as given to pack(). */
  packFile: string;
  /** Each entry's position in the pack's index. */
  positions: Uint32Array;
  /** Pack type codes (1-4: whole objects). */
  types: Uint8Array;
  sizes: Float64Array;
  /** Each object's id as hashed: 20 bytes each, in order. */
  digests: Buffer;
  /** The contents one after another (starts: where each one is), when kept. */
  contents?: Buffer;
  starts: Float64Array;
}

/** From the main thread to pack-arrival-worker.ts. */
export type ArrivalRequest =
  | { kind: 'pack'; id: number; packFile: string; idxFile: string; size: number }
  | { kind: 'arrived'; id: number; bytes: number }
  | { kind: 'settle'; token: number }
  | { kind: 'stop' };

/** From the thread: a batch (contents moved when kept), as FoundBatch with the pack's id; or its last word. */
export type ArrivalReply = ArrivalFound | { kind: 'settled'; token: number } | { kind: 'stopped' };

export interface ArrivalFound {
  kind: 'found';
  id: number;
  positions: Uint32Array;
  types: Uint8Array;
  sizes: Float64Array;
  digests: Uint8Array;
  contents?: ArrayBuffer;
  starts: Float64Array;
}

/**
 * Packs smaller than this are not checked as they arrive: the thread's start costs more than
 * checking them later does (measured on a copy of /etc, a 2 MiB pack).
 */
export const CHECK_FROM = 8 * 1024 * 1024;

export interface ArrivalOptions {
  /** Packs of at least this size are checked (CHECK_FROM by default). */
  from?: number;
  /** Bytes of contents kept in all (more are checked, their contents dropped). */
  keep: number;
  /** Objects larger than this are hashed as a stream, never kept. */
  keepEach: number;
}

export class PackArrivalCheck {
  private readonly opts: ArrivalOptions;
  private worker: Worker | undefined;
  private readonly files: string[] = [];
  private found: FoundBatch[] = [];
  private closed = false;
  private readonly settling = new Map<number, () => void>();
  private nextToken = 0;

  constructor(opts: ArrivalOptions) {
    this.opts = opts;
  }

  private start(): void {
    if (this.worker || this.closed) return;
    let w: Worker;
    try {
      w = new Worker(workerFile(import.meta.url, 'pack-arrival-worker'), { workerData: this.opts });
    } catch {
      this.closed = true; // no thread: everything is read the ordinary way
      return;
    }
    // Never what keeps the process running; a failed thread only means nothing more is found.
    w.unref();
    w.on('error', () => {});
    w.on('message', (m: ArrivalReply) => {
      if (m.kind === 'settled') {
        this.settling.get(m.token)?.();
        this.settling.delete(m.token);
      }
      if (m.kind !== 'found' || this.closed) return;
      const packFile = this.files[m.id];
      if (packFile === undefined) return;
      const digests = Buffer.from(m.digests.buffer, m.digests.byteOffset, m.digests.byteLength);
      this.found.push({ packFile, positions: m.positions, types: m.types, sizes: m.sizes, digests, starts: m.starts, contents: m.contents ? Buffer.from(m.contents) : undefined });
    });
    this.worker = w;
  }

  /**
   * A pack whose index is complete at idxFile and whose `size` bytes are about to arrive at
   * packFile: returns what to tell as they do (the first n bytes are written); undefined for a
   * pack under CHECK_FROM bytes, left to the ordinary reads. The thread starts with the first
   * pack it checks.
   */
  pack(packFile: string, idxFile: string, size: number): ((bytes: number) => void) | undefined {
    if (size < (this.opts.from ?? CHECK_FROM)) return undefined;
    this.start();
    const id = this.files.push(path.resolve(packFile)) - 1;
    this.post({ kind: 'pack', id, packFile, idxFile, size });
    let told = 0;
    return (bytes: number) => {
      if (bytes <= told) return;
      told = bytes;
      this.post({ kind: 'arrived', id, bytes });
    };
  }

  private post(m: ArrivalRequest): void {
    if (!this.closed) this.worker?.postMessage(m);
  }

  /** Resolves when the thread has been through every entry that arrived so far (take() has them). */
  settled(): Promise<void> {
    if (!this.worker) return Promise.resolve();
    const token = this.nextToken++;
    const done = new Promise<void>((resolve) => this.settling.set(token, resolve));
    this.post({ kind: 'settle', token });
    return done;
  }

  /** The batches found since the last call. */
  take(): FoundBatch[] {
    const out = this.found;
    this.found = [];
    return out;
  }

  /** Stop the thread; what it found and nobody took is dropped. */
  close(): void {
    // Told, not terminated: the thread closes its files first (it ends the run it is in).
    this.worker?.postMessage({ kind: 'stop' } satisfies ArrivalRequest);
    this.closed = true;
    this.found = [];
    this.worker = undefined;
    for (const resolve of this.settling.values()) resolve();
    this.settling.clear();
  }
}
