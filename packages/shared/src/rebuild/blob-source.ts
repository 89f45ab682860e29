import fs from 'node:fs';
import os from 'node:os';
import { PachaError } from '../errors.ts';
import type { PackArrivalCheck } from '../git/pack-arrival.ts';
import type { GitObject } from '../git/objects.ts';
import { Repository, type VerifiedObject } from '../git/repository.ts';

// File contents of the staged repository for the rebuild. What it adds to Repository (which
// reads and checks every object): a size limit for reading a blob into memory; a larger blob is
// streamed to disk so that memory does not follow file size.

/** Blobs up to this size are read into memory; larger ones are streamed. */
export const IN_MEMORY_LIMIT = 8 * 1024 * 1024;
/**
 * Blobs from this size on are inflated on other threads while this one checks the small ones
 * (below it, handing one over costs more than it saves).
 */
const OFF_THREAD_FROM = 64 * 1024;
/** Bytes of such blobs being read at once, and how many. */
const OFF_THREAD_BYTES = 64 * 1024 * 1024;
const OFF_THREAD_READS = 8;
/** While reads run on other threads, this thread lets them come back after this many small blobs. */
const YIELD_EVERY = 32;
/** checkBlobs goes through the files in runs of this many, from the last run back. */
const RUN = 256;
const MiB = 1024 * 1024;

/**
 * Memory for the validated blobs kept for the restore: a quarter of what the system has
 * available, at least 64 MiB and at most 1 GiB. Within it every blob is read and inflated once;
 * beyond it the restore reads and inflates the rest a second time.
 */
export function checkedBudget(available = os.freemem()): number {
  return Math.min(1024 * MiB, Math.max(64 * MiB, Math.floor(available / 4)));
}

interface Checked {
  /** The size validation found. */
  size: number;
  /** The content, while the restore still has uses for it. */
  content?: Buffer;
  /** Files of the snapshot with this content that have not been restored yet. */
  uses: number;
}

/** An object read whole, as keep() takes it. */
function whole(o: GitObject): VerifiedObject {
  return { type: o.type, size: o.content.length, content: o.content };
}

export class BlobSource {
  readonly repoDir: string;
  /** Commits, trees and refs of the staged repository (rebuild/read.ts reads them here). */
  readonly objects: Repository;
  private readonly budget: number;

  /**
   * `ahead`: a check of the packs that went on while they downloaded (the rebuild's fetch): what
   * it found is not read again, and its contents count in the budget (give it the same).
   */
  constructor(repoDir: string, opts: { budget?: number; ahead?: PackArrivalCheck } = {}) {
    this.repoDir = repoDir;
    this.objects = new Repository(repoDir);
    this.budget = opts.budget ?? checkedBudget();
    if (opts.ahead) this.objects.checkAhead(opts.ahead);
    this.ahead = opts.ahead !== undefined;
  }

  /** A check ahead is still going through the packs. */
  private ahead: boolean;

  has(oid: string): boolean {
    return this.objects.has(oid);
  }

  /** Content in memory when the metadata's size is within the limit, else undefined (use writeTo). */
  tryRead(oid: string, size: number): Buffer | undefined {
    if (size > IN_MEMORY_LIMIT) return undefined;
    const c = this.checked.get(oid);
    if (!c?.content) return this.readAny(oid);
    const content = c.content;
    // Its last file: the memory goes back to the budget's owner, the restore's page cache.
    if (--c.uses <= 0) {
      c.content = undefined;
      this.checkedBytes -= content.length;
    }
    return content;
  }

  // Blobs read (and their ids checked) by checkBlobs: each read once however many files share it,
  // and kept for the restore up to the budget, so that validating every blob first does not
  // mean reading and inflating every file twice.
  private readonly checked = new Map<string, Checked>();
  private checkedBytes = 0;

  /**
   * Read each file's blob whole before anything is written (its id checked as it is read) and
   * compare it with the metadata: for each file, what is wrong with it, or null. Give every
   * file the restore will write (a blob shared by several is read once). Blobs of OFF_THREAD_FROM
   * bytes or more are inflated on other threads (Repository.readAsync) while this thread checks
   * the small ones; those over IN_MEMORY_LIMIT are streamed, beside the rest too. Blobs the check
   * ahead found (Repository.takeVerified) are not read again: their size is compared. As that
   * check goes through the packs from their start (the order of the files), this thread takes
   * the files from the end, in runs, until the two meet; then the check ahead ends.
   */
  async checkBlobs(files: readonly { oid: string; size: number }[]): Promise<(string | null)[]> {
    const out: (string | null)[] = new Array(files.length).fill(null);
    /** Blobs being read on other threads, and the files waiting for them. */
    const reading = new Map<string, Promise<Checked | string>>();
    const waiting: Promise<void>[] = [];
    /** The reads on other threads (each settles, never rejects). */
    const running = new Set<Promise<void>>();
    let inFlight = 0;
    let small = 0;
    for (let stop = files.length; stop > 0; stop -= RUN) {
      // What the check ahead found meanwhile comes in between runs.
      if (this.ahead) await new Promise<void>((resolve) => setImmediate(resolve));
      for (let k = Math.max(0, stop - RUN); k < stop; k++) {
        const { oid, size } = files[k];
        const done = this.checked.get(oid);
        if (done) {
          out[k] = this.use(done, oid, size);
          continue;
        }
        let got = reading.get(oid);
        const found = got ? undefined : this.objects.takeVerified(oid);
        if (found) {
          out[k] = this.record(this.keep(found, oid, size), oid, size);
          continue;
        }
        if (!got && size < OFF_THREAD_FROM) {
          // Let the reads on other threads come back now and then, and go on to their next step.
          if (running.size > 0 && ++small % YIELD_EVERY === 0) await new Promise<void>((resolve) => setImmediate(resolve));
          out[k] = this.record(this.check(oid, size), oid, size);
          continue;
        }
        if (!got) {
          // Memory and threads in use stay bounded: wait for a read to finish first.
          while (running.size > 0 && (inFlight >= OFF_THREAD_BYTES || running.size >= OFF_THREAD_READS)) await Promise.race(running);
          const bytes = Math.min(size, IN_MEMORY_LIMIT);
          inFlight += bytes;
          got = this.checkOffThread(oid, size);
          reading.set(oid, got);
          const settled = got.then(() => {
            running.delete(settled);
            inFlight -= bytes;
          });
          running.add(settled);
        }
        waiting.push(
          got.then((c) => {
            out[k] = this.record(c, oid, size);
          }),
        );
      }
    }
    await Promise.all(waiting);
    if (this.ahead) {
      this.objects.endAhead();
      this.ahead = false;
    }
    return out;
  }

  /** A file's share of a blob checked: kept once in `checked`, counted for each file that uses it. */
  private record(c: Checked | string, oid: string, size: number): string | null {
    if (typeof c === 'string') return c;
    if (!this.checked.has(oid)) this.checked.set(oid, c);
    return this.use(this.checked.get(oid)!, oid, size);
  }

  private use(c: Checked, oid: string, size: number): string | null {
    c.uses++;
    return c.size === size ? null : `the metadata says ${size} bytes, its content (blob ${oid}) has ${c.size}`;
  }

  /** A blob of up to OFF_THREAD_FROM bytes, read here. */
  private check(oid: string, size: number): Checked | string {
    try {
      return this.keep(whole(this.objects.read(oid)), oid, size);
    } catch (e) {
      return this.unreadable(oid, e);
    }
  }

  /** A larger one: inflated on another thread, or streamed (never rejects). */
  private async checkOffThread(oid: string, size: number): Promise<Checked | string> {
    try {
      if (size > IN_MEMORY_LIMIT) {
        const fd = fs.openSync('/dev/null', 'w');
        try {
          return { size: await this.writeTo(oid, fd), uses: 0 };
        } finally {
          fs.closeSync(fd);
        }
      }
      return this.keep(whole(await this.objects.readAsync(oid)), oid, size);
    } catch (e) {
      return this.unreadable(oid, e);
    }
  }

  /** What was read, as validation found it: its content kept for the restore within the budget. */
  private keep(o: VerifiedObject, oid: string, size: number): Checked | string {
    if (o.type !== 'blob') return `its content ${oid} is a ${o.type}, not a blob`;
    const got = o.size;
    if (!o.content || got !== size || got > IN_MEMORY_LIMIT || this.checkedBytes + got > this.budget) return { size: got, uses: 0 };
    this.checkedBytes += got;
    return { size: got, content: o.content, uses: 0 };
  }

  private unreadable(oid: string, e: unknown): string {
    return `its content (blob ${oid}) cannot be read: ${(e as Error).message}`;
  }

  /** Any blob, in memory (symlink targets, small files); throws when it is missing or corrupt. */
  readAny(oid: string): Buffer {
    const o = this.objects.read(oid);
    if (o.type !== 'blob') throw new PachaError(`object ${oid} is a ${o.type}, not a blob`);
    return o.content;
  }

  /** Stream a blob into an open (new, empty) file, from its start; returns its size. */
  writeTo(oid: string, fd: number): Promise<number> {
    return this.objects.writeBlobTo(oid, fd);
  }

  close(): void {
    this.objects.endAhead();
    this.objects.close();
  }
}
