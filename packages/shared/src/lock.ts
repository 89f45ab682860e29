import fs from 'node:fs';
import { PachaError, errnoOf, errorMessage } from './errors.ts';
import type { Logger } from './log.ts';

// One pid lock per host, shared by daemon, snapshot, push and rebuild, so they never interleave.
// The file holds "<pid> <operation>"; a lock whose process is gone is stale and taken over
// with a warning. Re-entrant within one process (the daemon snapshots and pushes under its own lock).

export interface PidLock {
  readonly file: string;
  release(): void;
}

const heldHere = new Map<string, number>();

export interface LockHolder {
  pid: number;
  operation: string;
}

export function readLock(file: string): LockHolder | undefined {
  try {
    const [pid, ...op] = fs.readFileSync(file, 'utf8').trim().split(' ');
    const n = Number(pid);
    if (!Number.isInteger(n) || n <= 0) return undefined;
    return { pid: n, operation: op.join(' ') || 'unknown' };
  } catch (e) {
    if (errnoOf(e) === 'ENOENT') return undefined; // released meanwhile
    throw new PachaError(`cannot read the lock ${file}: ${errorMessage(e)}`, { cause: e });
  }
}

export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return errnoOf(e) === 'EPERM';
  }
}

export function acquireLock(file: string, operation: string, log?: Logger): PidLock {
  const count = heldHere.get(file);
  if (count !== undefined) {
    heldHere.set(file, count + 1);
    return { file, release: () => releaseOnce(file) };
  }
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      const fd = fs.openSync(file, 'wx', 0o644);
      fs.writeSync(fd, `${process.pid} ${operation}\n`);
      fs.closeSync(fd);
      heldHere.set(file, 1);
      return { file, release: () => releaseOnce(file) };
    } catch (e) {
      if (errnoOf(e) !== 'EEXIST') throw e;
    }
    const holder = readLock(file);
    if (holder && holder.pid !== process.pid && processAlive(holder.pid)) {
      throw new PachaError(`another pacha is running: ${holder.operation} (pid ${holder.pid}) holds ${file}`, {
        hint: 'wait for it to finish, or stop it (pacha status shows what it is doing)',
      });
    }
    log?.warn(`taking over stale lock ${file}${holder ? ` of pid ${holder.pid} (${holder.operation}), which is gone` : ''}`);
    try {
      fs.unlinkSync(file);
    } catch (e) {
      if (errnoOf(e) !== 'ENOENT') throw e; // else someone else took it over first; retry
    }
  }
  throw new PachaError(`could not acquire lock ${file}`);
}

function releaseOnce(file: string): void {
  const count = heldHere.get(file);
  if (count === undefined) return;
  if (count > 1) {
    heldHere.set(file, count - 1);
    return;
  }
  heldHere.delete(file);
  const holder = readLock(file);
  if (holder?.pid === process.pid) fs.rmSync(file, { force: true });
}
