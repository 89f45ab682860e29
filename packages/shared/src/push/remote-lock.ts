import os from 'node:os';
import { LockedError, NotFoundError, PachaError } from '../errors.ts';
import type { Logger } from '../log.ts';
import { processAlive } from '../lock.ts';
import type { Transport } from '../transport/transport.ts';

// One writer per host on the master: an exclusive lock file next to the repository, created with
// createExclusive (O_EXCL / SFTP "create new"), holding who took it and when. A push that dies
// leaves it behind; a lock older than STALE_LOCK_MS is taken over with a warning, because no
// healthy push holds it that long (pushes renew nothing: they finish or fail well within it).
// A lock left by a dead push of this same machine is taken over at once.

export const STALE_LOCK_MS = 10 * 60 * 1000;

export interface LockContent {
  host: string;
  pid: number;
  /** ISO time the lock was taken. */
  time: string;
  machine: string;
}

export interface RemoteLock {
  readonly path: string;
  release(): Promise<void>;
}

function parse(buf: Buffer): LockContent | undefined {
  try {
    const v = JSON.parse(buf.toString('utf8')) as LockContent;
    return typeof v.time === 'string' ? v : undefined;
  } catch {
    return undefined;
  }
}

export async function acquireRemoteLock(
  t: Transport,
  lockPath: string,
  host: string,
  log: Logger,
  opts: { staleMs?: number; now?: () => number } = {},
): Promise<RemoteLock> {
  const staleMs = opts.staleMs ?? STALE_LOCK_MS;
  const now = opts.now ?? Date.now;
  for (let attempt = 0; attempt < 3; attempt++) {
    const content: LockContent = { host, pid: process.pid, time: new Date(now()).toISOString(), machine: os.hostname() };
    const body = JSON.stringify(content) + '\n';
    if (await t.createExclusive(lockPath, body)) {
      return { path: lockPath, release: () => t.remove(lockPath) };
    }
    let holder: LockContent | undefined;
    let ageMs: number;
    try {
      holder = parse(await t.readFile(lockPath));
      const st = await t.stat(lockPath);
      // Trust the older of the two clocks' views: the time written in the lock, or its mtime.
      const written = holder ? Date.parse(holder.time) : NaN;
      ageMs = now() - Math.min(Number.isFinite(written) ? written : Infinity, st ? st.mtimeMs : Infinity);
      if (!Number.isFinite(ageMs)) ageMs = 0;
    } catch (e) {
      if (e instanceof NotFoundError) continue; // released meanwhile
      throw e;
    }
    const who = holder ? `pid ${holder.pid} on ${holder.machine} since ${holder.time}` : 'an unreadable holder';
    // A lock this machine's push left behind (its process is gone) is stale at once: the local
    // pid lock already keeps two pushes of one agent apart.
    const deadHere = holder !== undefined && holder.host === host && holder.machine === os.hostname() &&
      (holder.pid === process.pid || !processAlive(holder.pid));
    if (ageMs < staleMs && !deadHere) {
      throw new LockedError(`another push to ${lockPath} is in progress (${who})`, {
        hint: `it is taken over automatically once older than ${Math.round(staleMs / 60000)} minutes`,
      });
    }
    log.warn(`taking over stale push lock ${lockPath} (${who}, ${Math.round(ageMs / 1000)} s old)`);
    await t.remove(lockPath);
  }
  throw new PachaError(`could not take the push lock ${lockPath}: it keeps changing hands`);
}
