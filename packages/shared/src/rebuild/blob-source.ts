import fs from 'node:fs';
import os from 'node:os';
import { PachaError } from '../errors.ts';
import { Repository } from '../git/repository.ts';

// File contents of the staged repository for the rebuild. What it adds to Repository (which
// reads and checks every object): a size limit for reading a blob into memory; a larger blob is
// streamed to disk so that memory does not follow file size.

/** Blobs up to this size are read into memory; larger ones are streamed. */
export const IN_MEMORY_LIMIT = 8 * 1024 * 1024;
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

export class BlobSource {
  readonly repoDir: string;
  /** Commits, trees and refs of the staged repository (rebuild/read.ts reads them here). */
  readonly objects: Repository;
  private readonly budget: number;

  constructor(repoDir: string, opts: { budget?: number } = {}) {
    this.repoDir = repoDir;
    this.objects = new Repository(repoDir);
    this.budget = opts.budget ?? checkedBudget();
  }

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

  // Blobs read (and their ids checked) by checkBlob: each read once however many files share it,
  // and kept for the restore up to the budget, so that validating every blob first does not
  // mean reading and inflating every file twice.
  private readonly checked = new Map<string, Checked>();
  private checkedBytes = 0;

  /**
   * Read a file's blob whole before anything is written (its id is checked as it is read) and
   * compare it with the metadata: what is wrong with it, or null. Large blobs are streamed.
   * Call it once for each file that the restore will write with this content.
   */
  async checkBlob(oid: string, size: number): Promise<string | null> {
    let c = this.checked.get(oid);
    if (!c) {
      let got: Checked | string;
      try {
        got = await this.check(oid, size);
      } catch (e) {
        return `its content (blob ${oid}) cannot be read: ${(e as Error).message}`;
      }
      if (typeof got === 'string') return got;
      c = got;
      this.checked.set(oid, c);
    }
    c.uses++;
    return c.size === size ? null : `the metadata says ${size} bytes, its content (blob ${oid}) has ${c.size}`;
  }

  private async check(oid: string, size: number): Promise<Checked | string> {
    if (size > IN_MEMORY_LIMIT) {
      const fd = fs.openSync('/dev/null', 'w');
      try {
        return { size: await this.writeTo(oid, fd), uses: 0 };
      } finally {
        fs.closeSync(fd);
      }
    }
    const o = this.objects.read(oid);
    if (o.type !== 'blob') return `its content ${oid} is a ${o.type}, not a blob`;
    const got = o.content.length;
    if (got !== size || got > IN_MEMORY_LIMIT || this.checkedBytes + got > this.budget) return { size: got, uses: 0 };
    this.checkedBytes += got;
    return { size: got, content: o.content, uses: 0 };
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
    this.objects.close();
  }
}
