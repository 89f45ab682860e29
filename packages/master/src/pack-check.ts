import os from 'node:os';
import { Worker } from 'node:worker_threads';
import { errorMessage } from '@pacha/shared/errors';
import { checkObject } from '@pacha/shared/git/fsck';
import type { ObjectType } from '@pacha/shared/git/objects';
import type { PackReader } from '@pacha/shared/git/pack-reader';
import { workerFile } from '@pacha/shared/worker-file';

// The entries of a pack the master verifies before its index is placed (place.ts): every
// CRC-32, inflate and SHA-1, and the master's object rules. That is most of a push's cost on the
// master, so a large pack's entries are split into ranges checked at once by a few worker
// threads (pack-check-worker.ts, the same PackReader.verifyEntries on the same master-owned
// files); a small one (an everyday push) is checked in this thread, with no hand-over.

/** What the master accepts in a pack: commits, trees and blobs, well-formed as `git fsck --strict` wants them. */
export function objectRule(_oid: string, type: ObjectType, content: Buffer): string | null {
  return type === 'tag' ? 'is a tag (accepted: commits, trees and blobs)' : checkObject(type, content);
}

/** Packs with fewer objects than this are checked in the master's own thread. */
export const PARALLEL_FROM = 2048;
export const THREADS = Math.max(1, Math.min(4, os.availableParallelism()));
/** Ranges per thread: a range of large objects or long delta chains does not hold up the others. */
const RANGES_PER_THREAD = 4;
/** Threads idle this long are ended, here and in pack-stream.ts (a master with no push going on holds none). */
export const IDLE_MS = 30_000;

export interface EntriesResult {
  problems: string[];
  /** The objects that verified, with their types (the forward check takes blob types from here). */
  objects: Map<string, ObjectType>;
}

/** The request pack-check-worker.ts answers: the entries [from, to) in pack order. */
export interface RangeTask {
  id: number;
  packFile: string;
  idxFile: string;
  /** The index's name in messages (the master's copy has a temporary name). */
  idxName: string;
  from: number;
  to: number;
}

export type RangeReply = { id: number; problems: string[]; oids: string[]; types: ObjectType[] } | { id: number; error: string };

/**
 * Check the entries of `reader`'s pack from pack-order position `from` on (after
 * reader.verifyWhole() found nothing wrong). `idxFile`: the master's own copy of the index
 * `reader` was made from, for the threads to load.
 */
export async function verifyPackEntries(reader: PackReader, idxFile: string, from = 0): Promise<EntriesResult> {
  const objects = new Map<string, ObjectType>();
  const left = reader.count - from;
  if (left <= 0) return { problems: [], objects };
  if (left < PARALLEL_FROM || THREADS < 2) {
    const problems = await reader.verifyEntries({ check: objectRule, onObject: (oid, type) => objects.set(oid, type) }, from);
    return { problems, objects };
  }
  const parts = THREADS * RANGES_PER_THREAD;
  const step = Math.ceil(left / parts);
  const replies = await Promise.all(
    Array.from({ length: parts }, (_, k) =>
      pool.run({ packFile: reader.packFile, idxFile, idxName: reader.index.idxFile, from: from + k * step, to: Math.min(reader.count, from + (k + 1) * step) }),
    ),
  );
  const problems: string[] = [];
  for (const r of replies) {
    problems.push(...r.problems);
    r.oids.forEach((oid, i) => objects.set(oid, r.types[i]));
  }
  if (problems.length > 20) problems.splice(20, problems.length, `${reader.packFile}: more problems not listed`);
  return { problems, objects };
}

/**
 * A pack of `count` objects was just placed: its index comes next. Start the threads now for a
 * large one, so that their start-up (loading the reader) overlaps the index's upload and copy.
 */
export function warmPackCheck(count: number): void {
  if (count >= PARALLEL_FROM && THREADS >= 2) pool.warm();
}

interface Job {
  task: RangeTask;
  resolve(r: { problems: string[]; oids: string[]; types: ObjectType[] }): void;
  reject(e: Error): void;
}

/** A few worker threads, started on the first large pack and ended when idle. */
class Pool {
  private readonly idle: Worker[] = [];
  private readonly running = new Map<Worker, Job>();
  private readonly queue: Job[] = [];
  private count = 0;
  private nextId = 1;
  private timer: NodeJS.Timeout | undefined;

  run(task: Omit<RangeTask, 'id'>): Promise<{ problems: string[]; oids: string[]; types: ObjectType[] }> {
    return new Promise((resolve, reject) => {
      this.queue.push({ task: { ...task, id: this.nextId++ }, resolve, reject });
      this.pump();
    });
  }

  warm(): void {
    while (this.count < THREADS) this.idle.push(this.spawn());
    this.pump();
  }

  private pump(): void {
    clearTimeout(this.timer);
    while (this.queue.length > 0) {
      const w = this.idle.pop() ?? (this.count < THREADS ? this.spawn() : undefined);
      if (!w) return;
      const job = this.queue.shift()!;
      this.running.set(w, job);
      w.postMessage(job.task);
    }
    if (this.running.size === 0 && this.count > 0) {
      this.timer = setTimeout(() => this.endIdle(), IDLE_MS);
      this.timer.unref();
    }
  }

  private spawn(): Worker {
    const w = new Worker(workerFile(import.meta.url, 'pack-check-worker'));
    // Never what keeps the master running.
    w.unref();
    this.count++;
    w.on('message', (reply: RangeReply) => {
      const job = this.running.get(w);
      if (!job || job.task.id !== reply.id) return;
      this.running.delete(w);
      this.idle.push(w);
      if ('error' in reply) job.reject(new Error(reply.error));
      else job.resolve(reply);
      this.pump();
    });
    const gone = (why: string) => {
      if (!this.remove(w)) return;
      const job = this.running.get(w);
      this.running.delete(w);
      job?.reject(new Error(`the pack check thread stopped: ${why}`));
      this.pump();
    };
    w.on('error', (e) => gone(errorMessage(e)));
    w.on('exit', (code) => gone(`exit code ${code}`));
    return w;
  }

  /** Forget a worker; false when it was forgotten already. */
  private remove(w: Worker): boolean {
    const i = this.idle.indexOf(w);
    if (i >= 0) this.idle.splice(i, 1);
    else if (!this.running.has(w)) return false;
    this.count--;
    return true;
  }

  private endIdle(): void {
    for (const w of this.idle.splice(0)) {
      this.count--;
      void w.terminate();
    }
  }
}

const pool = new Pool();
