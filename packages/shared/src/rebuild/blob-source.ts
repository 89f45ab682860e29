import fs from 'node:fs';
import { PachaError } from '../errors.ts';
import { Repository } from '../git/repository.ts';

// File contents of the staged repository for the rebuild. What it adds to Repository (which
// reads and checks every object): a size limit for reading a blob into memory; a larger blob is
// streamed to disk so that memory does not follow file size.

/** Blobs up to this size are read into memory; larger ones are streamed. */
export const IN_MEMORY_LIMIT = 8 * 1024 * 1024;
/** Validated small blobs kept in memory for the restore. */
const CHECKED_BUDGET = 64 * 1024 * 1024;

export class BlobSource {
  readonly repoDir: string;
  /** Commits, trees and refs of the staged repository (rebuild/read.ts reads them here). */
  readonly objects: Repository;

  constructor(repoDir: string) {
    this.repoDir = repoDir;
    this.objects = new Repository(repoDir);
  }

  has(oid: string): boolean {
    return this.objects.has(oid);
  }

  /** Content in memory when the metadata's size is within the limit, else undefined (use writeTo). */
  tryRead(oid: string, size: number): Buffer | undefined {
    if (size > IN_MEMORY_LIMIT) return undefined;
    return this.checked.get(oid) ?? this.readAny(oid);
  }

  // Blobs read (and their ids checked) by checkBlob, kept for the restore up to a budget, so
  // that validating every blob first does not mean reading every small file twice.
  private readonly checked = new Map<string, Buffer>();
  private checkedBytes = 0;

  /**
   * Read a file's blob whole before anything is written (its id is checked as it is read) and
   * compare it with the metadata: what is wrong with it, or null. Large blobs are streamed.
   */
  async checkBlob(oid: string, size: number): Promise<string | null> {
    let got: number;
    try {
      if (size > IN_MEMORY_LIMIT) {
        const fd = fs.openSync('/dev/null', 'w');
        try {
          got = await this.writeTo(oid, fd);
        } finally {
          fs.closeSync(fd);
        }
      } else {
        const o = this.objects.read(oid);
        if (o.type !== 'blob') return `its content ${oid} is a ${o.type}, not a blob`;
        got = o.content.length;
        if (got === size && this.checkedBytes + got <= CHECKED_BUDGET) {
          this.checked.set(oid, o.content);
          this.checkedBytes += got;
        }
      }
    } catch (e) {
      return `its content (blob ${oid}) cannot be read: ${(e as Error).message}`;
    }
    return got === size ? null : `the metadata says ${size} bytes, its content (blob ${oid}) has ${got}`;
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
