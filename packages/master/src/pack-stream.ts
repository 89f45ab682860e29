import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type { Worker } from 'node:worker_threads';
import { errorMessage } from '@pacha/shared/errors';
import type { ScannedEntries } from '@pacha/shared/git/pack-scan';
import { MASTER_COPY_PREFIX } from './append-only.ts';
import { PARALLEL_FROM, THREADS } from './pack-check.ts';
import { ThreadCache } from './threads.ts';

// A large pack checked while the host uploads it. The bytes of every WRITE the master receives
// for a new temporary pack, in order from offset 0, go to a thread (pack-stream-worker.ts) that
// writes them into a file of the master's own, hashes them and scans the entries. When the host
// renames its file onto the pack, that copy is what is placed (place.ts): the bytes the master
// itself received and holds, checked, not the host's file. Writes may arrive a little ahead of
// their turn (an SFTP client keeps many in flight); they are held until the gap before them is
// filled. Anything else than writes that fill the file once, front to back (a write over bytes
// already written, a truncate, a second open, a failed write, a file of another size at the
// rename), drops the stream, and the rename copies and checks the host's file as for any other.

/** Bytes handed to a thread and not yet written by it: beyond this, the stream is dropped (memory stays bounded). */
const MAX_QUEUED = 32 * 1024 * 1024;
/** Bytes of writes held until the gap before them is filled, per upload and over all uploads of all hosts. */
const MAX_AHEAD = 8 * 1024 * 1024;
const MAX_AHEAD_ALL = 64 * 1024 * 1024;
let aheadAll = 0;

export type StreamMessage = { kind: 'start'; copyFile: string } | { kind: 'data'; bytes: Uint8Array } | { kind: 'end' } | { kind: 'abort' };
export type StreamDone = { ok: true; size: number; bodySha: string; tail: string; scanned: ScannedEntries } | { ok: false; error: string };
type FromThread = { kind: 'ack'; n: number } | StreamDone;

let running = 0;
const threads = new ThreadCache(import.meta.url, 'pack-stream-worker');

export class UploadStream {
  /** The master's copy, beside the pack. */
  readonly copyFile: string;
  /** Bytes received so far: the offset the next write must have. */
  next = 0;
  private open = true;
  private queued = 0;
  private readonly ahead = new Map<number, Uint8Array<ArrayBuffer>>();
  private aheadBytes = 0;
  /** Started when the first bytes (the pack's header) show a pack large enough to pay for it. */
  private worker: Worker | undefined;
  private done: Promise<StreamDone> = Promise.resolve({ ok: false, error: 'not started' });

  /** For a new temporary pack in `dir` (its writes may come in any order: the decision waits for its first bytes). */
  constructor(dir: string) {
    this.copyFile = path.join(dir, `${MASTER_COPY_PREFIX}${crypto.randomBytes(8).toString('hex')}`);
  }

  /** The thread, for a pack of at least PARALLEL_FROM objects while fewer than THREADS streams run; else the stream is dropped. */
  private startFor(first: Uint8Array): boolean {
    const head = Buffer.from(first.buffer, first.byteOffset, first.byteLength);
    if (head.length < 12 || head.toString('latin1', 0, 4) !== 'PACK' || head.readUInt32BE(8) < PARALLEL_FROM || running >= THREADS) return false;
    const worker = threads.take();
    this.worker = worker;
    running++;
    this.done = new Promise<StreamDone>((resolve) => {
      const off = () => {
        worker.off('message', onMessage);
        worker.off('error', onError);
        worker.off('exit', onExit);
      };
      const onMessage = (m: FromThread) => {
        if ('kind' in m) {
          this.queued -= m.n;
          return;
        }
        off();
        threads.giveBack(worker);
        resolve(m);
      };
      const fail = (error: string) => {
        off();
        fs.rm(this.copyFile, { force: true }, () => {});
        resolve({ ok: false, error });
      };
      const onError = (e: Error) => fail(errorMessage(e));
      const onExit = () => fail('the thread ended');
      worker.on('message', onMessage);
      worker.on('error', onError);
      worker.on('exit', onExit);
    });
    void this.done.then(() => running--);
    worker.postMessage({ kind: 'start', copyFile: this.copyFile } satisfies StreamMessage);
    return true;
  }

  /** A write the host sent, at receipt (before it is done on the host's file). */
  write(offset: number, data: Buffer): void {
    if (!this.open) return;
    if (offset < this.next || this.ahead.has(offset) || data.length === 0) return this.abort();
    const bytes = new Uint8Array(data.length);
    bytes.set(data);
    if (offset > this.next) {
      if (this.aheadBytes + bytes.length > MAX_AHEAD || aheadAll + bytes.length > MAX_AHEAD_ALL) return this.abort();
      this.ahead.set(offset, bytes);
      this.aheadBytes += bytes.length;
      aheadAll += bytes.length;
      return;
    }
    this.send(bytes);
    for (let b = this.ahead.get(this.next); b && this.open; b = this.ahead.get(this.next)) {
      this.ahead.delete(this.next);
      this.aheadBytes -= b.length;
      aheadAll -= b.length;
      this.send(b);
    }
  }

  private send(bytes: Uint8Array<ArrayBuffer>): void {
    if (this.queued + bytes.length > MAX_QUEUED) return this.abort();
    if (!this.worker && !this.startFor(bytes)) return this.abort();
    this.queued += bytes.length;
    this.next += bytes.length;
    this.worker!.postMessage({ kind: 'data', bytes } satisfies StreamMessage, [bytes.buffer]);
  }

  abort(): void {
    if (!this.open) return;
    this.open = false;
    this.ahead.clear();
    aheadAll -= this.aheadBytes;
    this.aheadBytes = 0;
    this.worker?.postMessage({ kind: 'abort' } satisfies StreamMessage);
  }

  /** The copy, fsynced, its hashes and the entries scanned; not ok when the stream was dropped. */
  finish(): Promise<StreamDone> {
    // Writes still held ahead of a gap: the file was not filled front to back.
    if (this.ahead.size > 0) this.abort();
    if (!this.open) return this.done.then((d) => (d.ok ? { ok: false, error: 'dropped' } : d));
    this.open = false;
    this.worker?.postMessage({ kind: 'end' } satisfies StreamMessage);
    return this.done;
  }
}
