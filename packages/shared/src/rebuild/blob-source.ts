import { PachaError } from '../errors.ts';
import { RepoObjects } from '../git/object-store.ts';
import { SnapshotReader } from '../snapshot/read.ts';

// File contents of the staged repository for the rebuild. What it adds to RepoObjects (which
// reads and checks every object): a size limit for reading a blob into memory, and streaming a
// larger blob to disk through SnapshotReader so that memory does not follow file size.

/** Blobs up to this size are read into memory; larger ones are streamed. */
export const IN_MEMORY_LIMIT = 8 * 1024 * 1024;

export class BlobSource {
  readonly repoDir: string;
  /** Commits, trees and refs of the staged repository (rebuild/read.ts reads them here). */
  readonly objects: RepoObjects;
  private readonly reader: SnapshotReader;

  constructor(repoDir: string) {
    this.repoDir = repoDir;
    this.objects = new RepoObjects(repoDir);
    this.reader = new SnapshotReader(repoDir);
  }

  has(oid: string): boolean {
    return this.objects.has(oid);
  }

  /** Content in memory when the metadata's size is within the limit, else undefined (use writeTo). */
  tryRead(oid: string, size: number): Buffer | undefined {
    if (size > IN_MEMORY_LIMIT) return undefined;
    return this.readAny(oid);
  }

  /** Any blob, in memory (symlink targets, small files); throws when it is missing or corrupt. */
  readAny(oid: string): Buffer {
    const o = this.objects.read(oid);
    if (o.type !== 'blob') throw new PachaError(`object ${oid} is a ${o.type}, not a blob`);
    return o.content;
  }

  /** Stream a blob into a file (created or truncated); returns its size. */
  writeTo(oid: string, file: string): Promise<number> {
    return this.reader.writeBlob(oid, file);
  }

  close(): void {
    this.objects.close();
  }
}
