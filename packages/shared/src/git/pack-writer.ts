import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';
import { PachaError } from '../errors.ts';
import { type ObjectType, objectHeader } from './objects.ts';
import { encodeEntryHeader } from './pack-entry.ts';
import { buildIndex, type IndexEntry } from './pack-index.ts';
import { collectYoungGarbage } from './memory.ts';
import { syncDir } from './fsync.ts';
import os from 'node:os';
import { DeflateWorker, type BatchItem, type FilesRead } from './deflate-worker.ts';
import { deflateAsync, deflateSync } from './deflate.ts';

// Writes one pack (version 2, whole objects, no deltas) plus its .idx v2. The pack grows in a
// temporary file in the pack dir; finish() renames it into place and the .idx last, so a reader
// never sees an index without its pack. Objects already in the repository (known()) or already in
// this pack are not written twice. Objects are written in the order they are added, also those
// deflated in the background (on the thread pool or the deflate worker), so a pack's bytes
// depend only on what was added.

/** Files up to this size are read whole; larger ones are streamed (memory independent of size). */
export const STREAM_THRESHOLD = 4 * 1024 * 1024;
const STREAM_CHUNK = 1024 * 1024;
const FLUSH_AT = 4 * 1024 * 1024;
const GC_EVERY = 16 * 1024 * 1024;
/**
 * Objects this large are deflated on another thread (deflateAsync) while the caller goes on (addObject).
 * Not smaller ones: on a busy machine the hand-over cost more CPU than it saved in time
 * (docs/benchmarks.md).
 */
const DEFER_DEFLATE_AT = 1024 * 1024;
/** Bytes of such objects in flight at most (their data and their deflated output are held). */
const DEFER_MAX_BYTES = 32 * 1024 * 1024;
/**
 * A durable pack is written out to disk in the background each time this much more is in the
 * file (syncAhead), so that finish()'s fsync does not wait for the whole pack at once.
 */
const SYNC_AHEAD_BYTES = 32 * 1024 * 1024;
/**
 * finish() syncs in the background what is left while it hashes the pack, when it is this much:
 * for less (a daemon's snapshot of one edit) two syncs would cost more than the one at the end.
 */
const FINISH_SYNC_AHEAD_BYTES = 4 * 1024 * 1024;
/** Bytes of smaller objects handed to the deflate worker at once (options.worker). */
const BATCH_BYTES = 1024 * 1024;
/**
 * Batches the worker may have waiting: when it has more, the caller's thread deflates the next
 * one itself, so that neither thread waits for the other (on a busy machine the worker may get
 * far less CPU than the reading thread). Not fewer: reading is bursty (a run of large text files,
 * then thousands of small ones), and with 2 the reading thread took a quarter of the batches of
 * /usr/share while the worker sat idle half of the time.
 */
const WORKER_BACKLOG = 6;
/**
 * Worker threads of a writer with the worker option: two on two cores, so that reading, hashing
 * and deflating the files (readFiles) take both while the main thread writes the pack.
 */
const WORKERS = Math.max(1, Math.min(4, os.availableParallelism()));

export interface PackWriterOptions {
  /** Is the object already stored elsewhere in the repository? Then it is skipped. */
  known?: (oid: string) => boolean;
  /** zlib level for blobs (git's loose objects use 1). */
  level?: number;
  /**
   * false: no fsync (a temporary pack that is uploaded and removed, whose durable copy is the
   * master's). Default true: a pack of the repository is on disk before anything refers to it.
   */
  durable?: boolean;
  /**
   * Deflate objects under 1 MiB on worker threads, in batches, while the caller goes on, and read
   * files there (readFiles): for a pack of many megabytes (a worker takes some 50 ms to start).
   */
  worker?: boolean;
}

/** An entry as written: its zlib stream made. */
interface Entry {
  oid: string;
  type: ObjectType;
  size: number;
  data: Uint8Array;
  crc?: number;
}

export interface FinishedPack {
  packFile: string;
  idxFile: string;
  /** Pack checksum (hex): the pack's name is pack-<id>.pack. */
  id: string;
  count: number;
  bytes: number;
}

export interface BlobFromFile {
  oid: string;
  size: number;
  /** false when the object was already stored (nothing written). */
  written: boolean;
  bytesRead: number;
}

/** Raised when a file kept changing while it was read. */
export class FileChangedError extends PachaError {
  constructor(file: string, tries: number) {
    super(`${file} changed while it was read (${tries} tries); it is left as it was in the previous snapshot`);
  }
}

// Leading bytes of formats that are compressed already (gzip, xz, zstd, bzip2, zip and jar,
// PNG, JPEG, WOFF and WOFF2): deflating them again costs time and saves nothing, so they are
// stored (zlib level 0, still a valid git object).
const COMPRESSED_MAGIC_HEX = ['1f8b', 'fd377a58', '28b52ffd', '425a68', '504b0304', '89504e47', 'ffd8ff', '774f4646', '774f4632'];
const COMPRESSED_MAGIC = COMPRESSED_MAGIC_HEX.map((h) => Buffer.from(h, 'hex'));

export function looksCompressed(data: Uint8Array): boolean {
  // Byte by byte: asked once per object, where a subarray and a compare per magic showed in profiles.
  return COMPRESSED_MAGIC.some((m) => {
    if (data.length < m.length) return false;
    for (let i = 0; i < m.length; i++) if (data[i] !== m[i]) return false;
    return true;
  });
}

function statKey(st: fs.BigIntStats): string {
  return `${st.size}:${st.mtimeNs}:${st.ctimeNs}:${st.ino}`;
}

export class PackWriter {
  readonly packDir: string;
  private readonly tmpFile: string;
  private fd: number;
  private offset = 12;
  private readonly entries: IndexEntry[] = [];
  private readonly inPack = new Set<string>();
  private readonly known: (oid: string) => boolean;
  private readonly level: number;
  private readonly durable: boolean;
  // Entries are copied into one buffer until it is written: holding views instead would keep
  // alive every 8 KiB pool slab they sit in (with the file contents read there), which made a
  // first snapshot of 100,000 small files grow to 2.5 GiB.
  private readonly pending = Buffer.allocUnsafeSlow(FLUSH_AT);
  private pendingBytes = 0;
  // Object ids of the index, 20 bytes each, in slabs of their own (not in the shared pool).
  private oidSlab = Buffer.allocUnsafeSlow(0);
  private oidSlabUsed = 0;
  private closed = false;
  /**
   * Entries not written yet, in pack order: deflated in the background, or made while some
   * before them were. drain() and finish() write them.
   */
  private readonly queue: { bytes: number; count: number; entries: Promise<Entry[]> }[] = [];
  /** Input bytes and entries of the queue. */
  private queuedBytes = 0;
  private queuedCount = 0;
  /** The worker threads (the worker option, startWorkers), and the next one readFiles gives a batch. */
  private readonly workers: DeflateWorker[] = [];
  private nextWorker = 0;
  /** readBuffer()'s buffer for files under DEFER_DEFLATE_AT. */
  private scratch = Buffer.allocUnsafeSlow(64 * 1024);
  /** Background syncs in flight (syncAhead), what the last one covers, and the first error one met. */
  private syncs: Promise<void>[] = [];
  private syncedTo = 0;
  private syncError: Error | undefined;
  /** The batch being filled for the deflate worker. */
  private batch: { data: Buffer; used: number; items: BatchItem[]; entries: Omit<Entry, 'data'>[] } | undefined;

  private constructor(packDir: string, opts: PackWriterOptions) {
    this.packDir = packDir;
    fs.mkdirSync(packDir, { recursive: true });
    this.tmpFile = path.join(packDir, `tmp_pack_${process.pid}_${crypto.randomBytes(6).toString('hex')}`);
    this.fd = fs.openSync(this.tmpFile, 'w+', 0o444);
    const header = Buffer.alloc(12);
    header.write('PACK', 0, 'latin1');
    header.writeUInt32BE(2, 4);
    fs.writeSync(this.fd, header, 0, 12, 0);
    this.known = opts.known ?? (() => false);
    this.level = opts.level ?? 1;
    this.durable = opts.durable ?? true;
    if (opts.worker) this.startWorkers();
  }

  /** Start a pack in packDir (usually <repo>/objects/pack). */
  static create(packDir: string, opts: PackWriterOptions = {}): PackWriter {
    return new PackWriter(packDir, opts);
  }

  get count(): number {
    return this.entries.length + this.queuedCount + (this.batch?.entries.length ?? 0);
  }

  /** Is the object in the repository or in this pack already? */
  has(oid: string): boolean {
    return this.inPack.has(oid) || this.known(oid);
  }

  private append(buf: Uint8Array): void {
    if (this.pendingBytes + buf.length > this.pending.length) this.flush();
    if (buf.length >= this.pending.length) {
      writeAll(this.fd, buf, this.offset);
    } else {
      this.pending.set(buf, this.pendingBytes);
      this.pendingBytes += buf.length;
    }
    this.offset += buf.length;
  }

  private flush(): void {
    if (this.pendingBytes === 0) return;
    writeAll(this.fd, this.pending.subarray(0, this.pendingBytes), this.offset - this.pendingBytes);
    this.pendingBytes = 0;
    this.syncAhead(SYNC_AHEAD_BYTES);
  }

  /**
   * Start an fdatasync on the thread pool when `minBytes` more are in the file than the last one
   * covered, unless one is in flight (or alongside it, `alongside`): the kernel would otherwise
   * keep every page of the pack dirty until finish()'s fsync, which then waits for all of them.
   * An error is kept for finish(): on Linux a later fsync need not report it again.
   */
  private syncAhead(minBytes: number, alongside = false): void {
    if (!this.durable || this.closed) return;
    const to = this.offset - this.pendingBytes;
    if ((!alongside && this.syncs.length > 0) || to - this.syncedTo < minBytes) return;
    const p = new Promise<void>((resolve) => {
      fs.fdatasync(this.fd, (err) => {
        if (err) this.syncError ??= err;
        this.syncedTo = Math.max(this.syncedTo, to);
        this.syncs = this.syncs.filter((x) => x !== p);
        resolve();
      });
    });
    this.syncs.push(p);
  }

  private oidBuffer(hex: string): Buffer {
    if (this.oidSlabUsed + 20 > this.oidSlab.length) {
      this.oidSlab = Buffer.allocUnsafeSlow(20 * 4096);
      this.oidSlabUsed = 0;
    }
    const b = this.oidSlab.subarray(this.oidSlabUsed, this.oidSlabUsed + 20);
    b.write(hex, 'hex');
    this.oidSlabUsed += 20;
    return b;
  }

  /** zlib level for an object: blobs already compressed are stored. */
  private levelFor(type: ObjectType, data: Uint8Array): number {
    if (type !== 'blob') return 6;
    return looksCompressed(data) ? 0 : this.level;
  }

  /**
   * Add an object from memory; returns its id. Skipped when already stored. An object of 1 MiB
   * or more is deflated on the thread pool, a smaller one on the deflate worker when there is one;
   * either is written by a later drain() or finish(), so the caller's work overlaps the deflate.
   * The data of an object of 1 MiB or more must not change until then (smaller ones are copied
   * into the worker's batch).
   */
  addObject(type: ObjectType, data: Uint8Array, oid?: string): string {
    const id = oid ?? crypto.createHash('sha1').update(objectHeader(type, data.length)).update(data).digest('hex');
    if (this.has(id)) return id;
    this.addNew(type, data, id);
    return id;
  }

  /** addObject of an object known to be neither stored nor in this pack. */
  private addNew(type: ObjectType, data: Uint8Array, id: string): void {
    this.assertOpen();
    const level = this.levelFor(type, data);
    if (data.length >= DEFER_DEFLATE_AT) {
      const deflated = deflateAsync(data, level);
      this.enqueue(data.length, 1, deflated.then((out) => [{ oid: id, type, size: data.length, data: out }]));
    } else if (this.workers.length > 0) {
      this.addToBatch({ oid: id, type, size: data.length }, data, level);
    } else {
      this.addEntry({ oid: id, type, size: data.length, data: deflateSync(data, level) });
    }
    this.inPack.add(id);
  }

  /** The batch being filled, with room for `n` more bytes (a full one goes to the worker first). */
  private batchWithRoom(n: number): NonNullable<PackWriter['batch']> {
    if (this.batch !== undefined && this.batch.used + n > this.batch.data.length) this.sendBatch();
    return (this.batch ??= { data: Buffer.allocUnsafeSlow(Math.max(BATCH_BYTES, n)), used: 0, items: [], entries: [] });
  }

  /** Put an object in the deflate worker's batch; a full batch goes to the worker. */
  private addToBatch(e: Omit<Entry, 'data'>, data: Uint8Array, level: number): void {
    const b = this.batch;
    // Read there already (readBuffer): nothing to copy.
    const inPlace = b !== undefined && data.buffer === b.data.buffer && data.byteOffset === b.data.byteOffset + b.used && b.used + data.length <= b.data.length;
    const into = inPlace ? b : this.batchWithRoom(data.length);
    if (!inPlace) into.data.set(data, into.used);
    into.items.push({ offset: into.used, length: data.length, level });
    into.entries.push(e);
    into.used += data.length;
  }

  private sendBatch(): void {
    const b = this.batch;
    if (b === undefined) return;
    this.batch = undefined;
    // The least busy worker.
    const deflater = this.workers.reduce((a, w) => (w.backlog < a.backlog ? w : a));
    const out =
      deflater.backlog < WORKER_BACKLOG
        ? deflater.deflate(b.data, b.items)
        : Promise.resolve(b.items.map((it) => deflateSync(b.data.subarray(it.offset, it.offset + it.length), it.level)));
    this.enqueue(b.used, b.entries.length, out.then((parts) => b.entries.map((e, i) => ({ ...e, data: parts[i] }))));
  }

  private enqueue(bytes: number, count: number, entries: Promise<Entry[]>): void {
    this.sendBatch(); // what was added before goes before
    entries.catch(() => undefined); // reported by drain() or finish(); an aborted pack ignores it
    this.queue.push({ bytes, count, entries });
    this.queuedBytes += bytes;
    this.queuedCount += count;
  }

  /** Write queued entries, oldest first, until at most `maxBytes` of input are in flight. */
  private async drain(maxBytes: number): Promise<void> {
    if (maxBytes < 0) this.sendBatch();
    while (this.queue.length > 0 && this.queuedBytes > maxBytes) {
      const q = this.queue.shift()!;
      this.queuedBytes -= q.bytes;
      this.queuedCount -= q.count;
      const entries = await q.entries;
      this.assertOpen();
      for (const e of entries) this.appendEntry(e);
    }
  }

  /** Write an entry now, or after the ones still being deflated. */
  private addEntry(e: Entry): void {
    if (this.queue.length === 0 && this.batch === undefined) this.appendEntry(e);
    else this.enqueue(e.data.length, 1, Promise.resolve([e]));
  }

  /**
   * Add an entry whose zlib stream is already made (e.g. copied from another pack).
   * crc is the CRC32 of header plus data as git's idx records it; computed when omitted.
   */
  addRawEntry(e: Entry): boolean {
    this.assertOpen();
    if (this.inPack.has(e.oid)) return false;
    this.addEntry(e);
    this.inPack.add(e.oid);
    return true;
  }

  private appendEntry(e: Entry): void {
    const header = encodeEntryHeader(e.type, e.size);
    const crc = e.crc ?? zlib.crc32(e.data, zlib.crc32(header));
    this.entries.push({ oid: this.oidBuffer(e.oid), crc, offset: this.offset });
    this.inPack.add(e.oid);
    this.append(header);
    this.append(e.data);
  }

  /**
   * Where a file of `size` bytes is read whole. Under DEFER_DEFLATE_AT one buffer serves every
   * file (or the worker's batch): addObject keeps none of such data (deflated at once, or copied
   * into the worker's batch). Larger ones are kept until the thread pool has deflated them: a buffer of their own.
   */
  private readBuffer(size: number): Buffer {
    if (size + 1 >= DEFER_DEFLATE_AT) return Buffer.allocUnsafeSlow(size + 1);
    // With the deflate worker: straight into the free part of its batch, where addToBatch then
    // leaves it (a file already stored is simply overwritten by the next one).
    if (this.workers.length > 0) {
      const b = this.batchWithRoom(size + 1);
      return b.data.subarray(b.used);
    }
    if (this.scratch.length < size + 1) this.scratch = Buffer.allocUnsafeSlow(Math.max(size + 1, Math.min(2 * this.scratch.length, DEFER_DEFLATE_AT)));
    return this.scratch;
  }

  /** Start the worker threads of the worker option now (a pack found to be large after it was started). */
  startWorkers(): void {
    this.assertOpen();
    while (this.workers.length < WORKERS) this.workers.push(new DeflateWorker(COMPRESSED_MAGIC_HEX));
  }

  /** Whether readFiles reads on worker threads (else it is not to be called). */
  get readsOnWorkers(): boolean {
    return this.workers.length > 0;
  }

  /**
   * Read, hash and deflate files of up to STREAM_THRESHOLD bytes on a worker thread, in the
   * background (the workers take turns); nothing is added to the pack until addRead. A file the
   * worker did not read as it was (streams[i] null) is for addBlobFromFile, whose rules and
   * messages hold for every file.
   */
  readFiles(files: string[]): Promise<FilesRead> {
    const w = this.workers[this.nextWorker++ % this.workers.length];
    return w.readFiles(files, this.level, STREAM_THRESHOLD);
  }

  /** Add a blob readFiles made (in the order the caller wants in the pack); skipped when stored already. */
  async addRead(oid: string, size: number, stream: Buffer): Promise<boolean> {
    this.assertOpen();
    if (this.has(oid)) return false;
    // What is queued before it is written first, so that this one is written at once rather than queued.
    await this.drain(0);
    this.addEntry({ oid, type: 'blob', size, data: stream });
    this.inPack.add(oid);
    return true;
  }

  /**
   * Add a file's content as a blob. Small files are read whole; large ones are hashed and
   * deflated as a stream straight into the pack. A file that changes while it is read (size,
   * mtime, ctime differ before and after) is read again, up to `tries` times.
   */
  async addBlobFromFile(file: string, opts: { tries?: number } = {}): Promise<BlobFromFile> {
    this.assertOpen();
    // Bounded memory: what the thread pool has not deflated yet waits here.
    await this.drain(DEFER_MAX_BYTES);
    const tries = opts.tries ?? 3;
    let bytesRead = 0;
    for (let attempt = 1; attempt <= tries; attempt++) {
      const { fd, before } = openRegular(file);
      try {
        const size = Number(before.size);
        if (size <= STREAM_THRESHOLD) {
          const data = readWhole(fd, size, this.readBuffer(size));
          bytesRead += data.length;
          const after = fs.fstatSync(fd, { bigint: true });
          if (statKey(after) !== statKey(before) || data.length !== size) continue;
          const oid = crypto.createHash('sha1').update(objectHeader('blob', size)).update(data).digest('hex');
          if (this.has(oid)) return { oid, size, written: false, bytesRead };
          this.addNew('blob', data, oid);
          return { oid, size, written: true, bytesRead };
        }
        const r = await this.streamBlob(fd, size);
        bytesRead += r.bytesRead;
        const after = fs.fstatSync(fd, { bigint: true });
        if (r.oid !== null && statKey(after) === statKey(before)) {
          return { oid: r.oid, size, written: r.written, bytesRead };
        }
      } finally {
        fs.closeSync(fd);
      }
    }
    throw Object.assign(new FileChangedError(file, tries), { bytesRead });
  }

  /** Hash and deflate at once, writing the entry as it goes; truncate it back if not needed. */
  private async streamBlob(fd: number, size: number): Promise<{ oid: string | null; written: boolean; bytesRead: number }> {
    // It writes at the end of the pack: everything added before is written first.
    await this.drain(-1);
    this.flush();
    const start = this.offset;
    const hash = crypto.createHash('sha1').update(objectHeader('blob', size));
    const header = encodeEntryHeader('blob', size);
    let crc = zlib.crc32(header);
    let pos = start;
    fs.writeSync(this.fd, header, 0, header.length, pos);
    pos += header.length;
    const head = Buffer.alloc(8);
    const level = looksCompressed(head.subarray(0, fs.readSync(fd, head, 0, head.length, 0))) ? 0 : this.level;
    const deflate = zlib.createDeflate({ level, chunkSize: 256 * 1024 });
    const chunk = Buffer.allocUnsafe(STREAM_CHUNK);
    let read = 0;
    const written = new Promise<void>((resolve, reject) => {
      deflate.on('data', (out: Buffer) => {
        fs.writeSync(this.fd, out, 0, out.length, pos);
        pos += out.length;
        crc = zlib.crc32(out, crc);
      });
      deflate.on('end', resolve);
      deflate.on('error', reject);
    });
    let sinceGc = 0;
    for (;;) {
      const n = fs.readSync(fd, chunk, 0, chunk.length, read);
      if (n === 0) break;
      read += n;
      const piece = chunk.subarray(0, n);
      hash.update(piece);
      // Wait until zlib has consumed the piece: the read buffer is reused for the next one.
      await new Promise<void>((resolve, reject) => deflate.write(piece, (err) => (err ? reject(err) : resolve())));
      sinceGc += n;
      if (sinceGc >= GC_EVERY) {
        sinceGc = 0;
        collectYoungGarbage();
      }
      if (read > size) break;
    }
    deflate.end();
    await written;
    const oid = hash.digest('hex');
    if (read !== size) {
      fs.ftruncateSync(this.fd, start);
      return { oid: null, written: false, bytesRead: read };
    }
    if (this.has(oid)) {
      fs.ftruncateSync(this.fd, start);
      return { oid, written: false, bytesRead: read };
    }
    this.entries.push({ oid: this.oidBuffer(oid), crc, offset: start });
    this.inPack.add(oid);
    this.offset = pos;
    this.syncAhead(SYNC_AHEAD_BYTES);
    return { oid, written: true, bytesRead: read };
  }

  /** Write every entry added so far to the file (finish() does it first). */
  async writeQueued(): Promise<void> {
    this.assertOpen();
    await this.drain(-1);
    this.flush();
  }

  /** Complete the pack: checksum, idx, rename into place (.idx last). null when empty. */
  async finish(): Promise<FinishedPack | null> {
    this.assertOpen();
    await this.drain(-1);
    for (const w of this.workers) w.close();
    if (this.entries.length === 0) {
      this.abort();
      return null;
    }
    this.flush();
    const count = Buffer.alloc(4);
    count.writeUInt32BE(this.entries.length);
    fs.writeSync(this.fd, count, 0, 4, 8);
    // Longer after a large file's stream that failed half-way: cut back. Shorter: something cut
    // it under the writer; extending it would seal zeros with a right checksum.
    const onDisk = fs.fstatSync(this.fd).size;
    if (onDisk < this.offset) throw new PachaError(`${this.tmpFile} holds ${onDisk} bytes where ${this.offset} were written: not sealed`);
    if (onDisk > this.offset) fs.ftruncateSync(this.fd, this.offset);
    // What is not on disk yet goes there while the file is read again for its checksum.
    this.syncAhead(FINISH_SYNC_AHEAD_BYTES, true);
    // The checksum covers the header, whose count is only known now: hash the file once more.
    const hash = crypto.createHash('sha1');
    const buf = Buffer.allocUnsafe(STREAM_CHUNK);
    for (let pos = 0; pos < this.offset; ) {
      const n = fs.readSync(this.fd, buf, 0, Math.min(buf.length, this.offset - pos), pos);
      if (n === 0) throw new Error(`pack ${this.tmpFile} shrank while being written`);
      hash.update(buf.subarray(0, n));
      pos += n;
    }
    const sha = hash.digest();
    fs.writeSync(this.fd, sha, 0, 20, this.offset);
    await Promise.all(this.syncs);
    if (this.syncError) throw new PachaError(`cannot write ${this.tmpFile} to disk: ${this.syncError.message}`, { cause: this.syncError });
    // The trailer, the count and the size: what the background syncs left.
    if (this.durable) fs.fsyncSync(this.fd);
    fs.closeSync(this.fd);
    this.closed = true;
    const id = sha.toString('hex');
    const packFile = path.join(this.packDir, `pack-${id}.pack`);
    const idxFile = path.join(this.packDir, `pack-${id}.idx`);
    const idxTmp = `${this.tmpFile}.idx`;
    try {
      const idx = buildIndex(this.entries, sha);
      const ifd = fs.openSync(idxTmp, 'w', 0o444);
      try {
        fs.writeSync(ifd, idx);
        if (this.durable) fs.fsyncSync(ifd);
      } finally {
        fs.closeSync(ifd);
      }
      fs.renameSync(this.tmpFile, packFile);
      fs.renameSync(idxTmp, idxFile);
      if (this.durable) syncDir(this.packDir);
    } catch (e) {
      fs.rmSync(this.tmpFile, { force: true });
      fs.rmSync(idxTmp, { force: true });
      throw e;
    }
    return { packFile, idxFile, id, count: this.entries.length, bytes: this.offset + 20 };
  }

  /** Drop the temporary pack. */
  abort(): void {
    if (this.closed) return;
    this.closed = true;
    for (const w of this.workers) w.close();
    const fd = this.fd;
    const close = () => {
      try {
        fs.closeSync(fd);
      } catch {
        // already closed
      }
    };
    // A background sync still uses the descriptor: closed after it (a number closed now could
    // be given to another file and synced in its place).
    if (this.syncs.length > 0) void Promise.all(this.syncs).then(close);
    else close();
    fs.rmSync(this.tmpFile, { force: true });
  }

  private assertOpen(): void {
    if (this.closed) throw new Error('PackWriter: pack already finished or aborted');
  }
}

// Never block on a fifo or follow a symlink that replaced the file since it was listed.
const OPEN_FLAGS = fs.constants.O_RDONLY | fs.constants.O_NONBLOCK | fs.constants.O_NOFOLLOW;

/** Open a file to read; its stat, taken once, is also the "before" of the re-read rule. */
function openRegular(file: string): { fd: number; before: fs.BigIntStats } {
  const fd = fs.openSync(file, OPEN_FLAGS);
  const before = fs.fstatSync(fd, { bigint: true });
  if (!before.isFile()) {
    fs.closeSync(fd);
    throw new PachaError(`${file} is no longer a regular file`);
  }
  return { fd, before };
}

function writeAll(fd: number, data: Uint8Array, position: number): void {
  for (let done = 0; done < data.length; ) done += fs.writeSync(fd, data, done, data.length - done, position + done);
}

/**
 * Read a file of `size` bytes into `buf` (size + 1 bytes or more). One byte more than expected
 * tells a file that grew since fstat; a short read is the end of a regular file, so a file read
 * whole costs one read call, not a second one that returns nothing. A file that was shorter
 * than its stat said fails the size check of the caller and is read again.
 */
function readWhole(fd: number, size: number, buf: Buffer): Buffer {
  let n = 0;
  for (;;) {
    const want = size + 1 - n;
    const r = fs.readSync(fd, buf, n, want, n);
    n += r;
    if (r === 0 || r < want) break;
  }
  return buf.subarray(0, n);
}

/** The blob id of a file without storing it (pacha diff). Same re-read rule as addBlobFromFile. */
export function hashFile(file: string, tries = 3): { oid: string; size: number; bytesRead: number } {
  let bytesRead = 0;
  const chunk = Buffer.allocUnsafe(STREAM_CHUNK);
  for (let attempt = 1; attempt <= tries; attempt++) {
    const { fd, before } = openRegular(file);
    try {
      const size = Number(before.size);
      const hash = crypto.createHash('sha1').update(objectHeader('blob', size));
      let read = 0;
      for (;;) {
        const n = fs.readSync(fd, chunk, 0, chunk.length, read);
        if (n === 0) break;
        read += n;
        hash.update(chunk.subarray(0, n));
        if (read > size) break;
      }
      bytesRead += read;
      const after = fs.fstatSync(fd, { bigint: true });
      if (read === size && statKey(after) === statKey(before)) return { oid: hash.digest('hex'), size, bytesRead };
    } finally {
      fs.closeSync(fd);
    }
  }
  throw Object.assign(new FileChangedError(file, tries), { bytesRead });
}
