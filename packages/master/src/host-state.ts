import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { errnoOf } from '@pacha/shared/errors';
import type { ObjectType } from '@pacha/shared/git/objects';
import { HOST_TREE } from '@pacha/shared/master-tree';
import { MASTER_COPY_PREFIX, classify } from './append-only.ts';
import { Refusal } from './host-view.ts';
import { UploadStream } from './pack-stream.ts';
import type { ScannedEntries } from '@pacha/shared/git/pack-scan';

// What the master knows about one host while any of its connections is open: one object per
// host, shared by all its connections and channels (never per channel), so that a limit or a
// rename in progress holds whichever channel the next request comes on.

export interface HostLimits {
  /** Open file and directory handles of one host, over all its connections and channels. */
  maxHandles: number;
  /** Authenticated connections of one host at a time. */
  maxConnections: number;
  /** Bytes of one host's temporary files (uploads not yet renamed into place) on the master's disk. */
  maxTempBytes: number;
}

export const HOST_LIMIT_DEFAULTS: HostLimits = { maxHandles: 64, maxConnections: 8, maxTempBytes: 32 * 1024 ** 3 };

/** The folders where the host's temporary files and the master's copies (place.ts) are made. */
const WORK_DIRS = [HOST_TREE.repo, `${HOST_TREE.repo}/objects/pack`, `${HOST_TREE.repo}/refs/heads`];

/** A temporary file of the host, by device and inode (a name can be removed while a handle still writes). */
interface TempFile {
  /** Its size as counted: the end of its furthest write or truncate (holes count). */
  size: number;
  /** Still has its name (not yet removed or renamed into place). */
  named: boolean;
  /** The host's handles open on it. */
  handles: number;
}

export function tempFileId(st: fs.Stats): string {
  return `${st.dev}:${st.ino}`;
}

export class HostState {
  readonly host: string;
  readonly limits: HostLimits;
  handles = 0;
  connections = 0;
  /**
   * Types of the objects of packs this master verified whole and placed since the host's last
   * ref update: the forward check takes a blob's type from here instead of reading it again.
   */
  readonly verified = new Map<string, ObjectType>();
  /** Packs whose checksum this master computed itself over the file it placed (checkPack). */
  readonly checksummed = new Set<string>();
  /** Packs placed from an upload stream (pack-stream.ts): the entries scanned in the master's copy, for checking their index. */
  readonly scanned = new Map<string, ScannedEntries>();
  /** Upload streams of new temporary packs, by the file's id. */
  private readonly streams = new Map<string, UploadStream>();
  private tail: Promise<unknown> = Promise.resolve();
  /** The host's temporary files on disk and their bytes (maxTempBytes). */
  private readonly temps = new Map<string, TempFile>();
  tempBytes = 0;
  private prepared: Promise<number> | undefined;

  constructor(host: string, limits: HostLimits) {
    this.host = host;
    this.limits = limits;
  }

  /**
   * Reserve a handle now, before any await: pipelined OPENs each see the count the ones before
   * them left. Throws Refusal at the limit; release() gives it back.
   */
  reserveHandle(): void {
    if (this.handles >= this.limits.maxHandles) {
      throw new Refusal('failure', `too many open handles for ${this.host} (limit ${this.limits.maxHandles} over all its connections); close some first`);
    }
    this.handles++;
  }

  releaseHandle(): void {
    if (this.handles > 0) this.handles--;
  }

  /**
   * Before the host's first session in this master's life: remove the copies an interrupted
   * rename left (a crash between copy and rename, place.ts), and count the temporary files the
   * host has on disk already. Once per master start; returns the number of copies removed.
   */
  prepare(homeReal: string): Promise<number> {
    this.prepared ??= (async () => {
      let removed = 0;
      for (const dir of WORK_DIRS) {
        let names: string[];
        try {
          names = await fsp.readdir(path.join(homeReal, dir));
        } catch (e) {
          if (errnoOf(e) === 'ENOENT' || errnoOf(e) === 'ENOTDIR') continue;
          throw e;
        }
        for (const name of names) {
          const real = path.join(homeReal, dir, name);
          if (name.startsWith(MASTER_COPY_PREFIX)) {
            await fsp.rm(real, { force: true });
            removed++;
            continue;
          }
          const k = classify(`${dir}/${name}`).kind;
          if (k !== 'tmp' && k !== 'lock') continue;
          const st = await fsp.lstat(real).catch(() => null);
          if (st?.isFile()) this.tempResize(tempFileId(st), st.size, true);
        }
      }
      return removed;
    })();
    return this.prepared;
  }

  private temp(id: string): TempFile {
    let t = this.temps.get(id);
    if (!t) this.temps.set(id, (t = { size: 0, named: true, handles: 0 }));
    return t;
  }

  private tempDrop(id: string, t: TempFile): void {
    if (t.named || t.handles > 0) return;
    this.tempBytes -= t.size;
    this.temps.delete(id);
  }

  /**
   * A temporary file takes `size` bytes now (a write's end, a truncate, its size when opened).
   * A growth is counted before the write is done, in the same tick: throws Refusal when it would
   * take the host's temporary files past the limit. `trust`: a size found on disk, counted as is.
   */
  tempResize(id: string, size: number, trust = false): void {
    const t = this.temp(id);
    const grow = size - t.size;
    if (!trust && grow > 0 && this.tempBytes + grow > this.limits.maxTempBytes) {
      throw new Refusal(
        'failure',
        `temporary uploads of ${this.host} would take ${this.tempBytes + grow} bytes on the master, more than the ${this.limits.maxTempBytes} allowed per host (--max-host-temp); remove unfinished uploads (tmp_*) or ask the operator to raise the limit`,
      );
    }
    t.size = size;
    this.tempBytes += grow;
  }

  /** A write of `length` bytes at `offset` (append: at the end) through a handle: counted first. */
  tempWrite(id: string, offset: number | 'append', length: number): void {
    const t = this.temp(id);
    const end = offset === 'append' ? t.size + length : offset + length;
    if (end > t.size) this.tempResize(id, end);
  }

  tempOpened(id: string, size: number): void {
    const t = this.temp(id);
    t.handles++;
    t.named = true;
    this.tempResize(id, size, true);
  }

  tempClosed(id: string): void {
    const t = this.temps.get(id);
    if (!t) return;
    if (t.handles > 0) t.handles--;
    this.tempDrop(id, t);
  }

  /** A new (empty) temporary pack opened for writing: its writes go to an upload stream (pack-stream.ts). */
  streamOpen(id: string, dir: string): void {
    this.streamDrop(id);
    this.streams.set(id, new UploadStream(dir));
  }

  /** A write to a temporary file, at receipt: to its upload stream, if it has one. */
  streamWrite(id: string, offset: number | 'append', data: Buffer): void {
    const s = this.streams.get(id);
    if (!s) return;
    if (offset === 'append') this.streamDrop(id);
    else s.write(offset, data);
  }

  /** The file changed otherwise than by writes in order (truncate, another open, a failed write): no stream. */
  streamDrop(id: string): void {
    this.streams.get(id)?.abort();
    this.streams.delete(id);
  }

  streamDropAll(): void {
    for (const id of [...this.streams.keys()]) this.streamDrop(id);
  }

  /** The stream of a file being renamed into place (place.ts finishes or drops it). */
  takeStream(id: string): UploadStream | undefined {
    const s = this.streams.get(id);
    this.streams.delete(id);
    return s;
  }

  /** Its name is gone (removed, or renamed into place by the master): its bytes are freed once no handle holds it. */
  tempUnlinked(id: string): void {
    this.streamDrop(id);
    const t = this.temps.get(id);
    if (!t) return;
    t.named = false;
    this.tempDrop(id, t);
  }

  /** Run fn after every earlier one of this host has finished: renames and ref updates never interleave. */
  serialize<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.tail.then(fn, fn);
    this.tail = run.catch(() => undefined);
    return run;
  }
}

/**
 * One state per host that ever logged in (only hosts with a key can): kept after its last
 * connection closes, so that a rename still running from a closed connection stays serialised
 * with the next connection's.
 */
export class HostStates {
  private readonly states = new Map<string, HostState>();
  private readonly limits: HostLimits;

  constructor(limits: HostLimits = HOST_LIMIT_DEFAULTS) {
    this.limits = limits;
  }

  /** A new authenticated connection of host; null when the host has its maximum open already. */
  connect(host: string): HostState | null {
    let s = this.states.get(host);
    if (!s) this.states.set(host, (s = new HostState(host, this.limits)));
    if (s.connections >= this.limits.maxConnections) return null;
    s.connections++;
    return s;
  }

  disconnect(s: HostState): void {
    if (s.connections > 0) s.connections--;
    // An upload left unfinished holds no thread once the host is gone.
    if (s.connections === 0) s.streamDropAll();
  }

  get size(): number {
    return this.states.size;
  }
}
