import os from 'node:os';
import type { Worker } from 'node:worker_threads';
import { errorMessage } from '@pacha/shared/errors';
import { checkObject } from '@pacha/shared/git/fsck';
import type { ObjectType } from '@pacha/shared/git/objects';
import type { PackReader } from '@pacha/shared/git/pack-reader';
import { ThreadCache } from './threads.ts';

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

/** Ranges handed to at most THREADS threads at once; the rest wait their turn. */
class RangePool {
  private readonly threads = new ThreadCache(import.meta.url, 'pack-check-worker');
  private readonly queue: Job[] = [];
  private busy = 0;
  private nextId = 1;

  run(task: Omit<RangeTask, 'id'>): Promise<{ problems: string[]; oids: string[]; types: ObjectType[] }> {
    return new Promise((resolve, reject) => {
      this.queue.push({ task: { ...task, id: this.nextId++ }, resolve, reject });
      this.pump();
    });
  }

  warm(): void {
    this.threads.warm(THREADS);
  }

  private pump(): void {
    while (this.queue.length > 0 && this.busy < THREADS) {
      this.busy++;
      this.runOn(this.threads.take(), this.queue.shift()!);
    }
  }

  private runOn(w: Worker, job: Job): void {
    const settle = (sound: boolean) => {
      w.off('message', onMessage);
      w.off('error', onError);
      w.off('exit', onExit);
      this.busy--;
      if (sound) this.threads.giveBack(w);
      this.pump();
    };
    const onMessage = (reply: RangeReply) => {
      if (reply.id !== job.task.id) return;
      settle(true);
      if ('error' in reply) job.reject(new Error(reply.error));
      else job.resolve(reply);
    };
    const onError = (e: Error) => {
      settle(false);
      job.reject(new Error(`the pack check thread stopped: ${errorMessage(e)}`));
    };
    const onExit = (code: number) => {
      settle(false);
      job.reject(new Error(`the pack check thread stopped: exit code ${code}`));
    };
    w.on('message', onMessage);
    w.on('error', onError);
    w.on('exit', onExit);
    w.postMessage(job.task);
  }
}

const pool = new RangePool();
