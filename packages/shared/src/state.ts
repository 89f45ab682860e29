import fs from 'node:fs';
import path from 'node:path';

// Layout of the agent's state directory (pacha.state.path). One place names every file so
// that commands never disagree about where things live.
export interface StatePaths {
  dir: string;
  /** Bare git repository holding every local snapshot. */
  repo: string;
  /** Watch list managed by `pacha watch` / `unwatch` (one absolute host path per line). */
  watchList: string;
  /** Stat cache of the last snapshot (lets an unchanged file be skipped without reading it). */
  statCache: string;
  /** Last snapshot / push / error, daemon heartbeat: written by the agent (status-files.ts), read by `pacha status`. */
  status: string;
  /** Phase timings of the last snapshot, push and rebuild: read by `pacha report`. */
  report: string;
  /** The pid lock shared by daemon, snapshot, push and rebuild. */
  lock: string;
  /** Hook journal of rebuilds, one file per host. */
  hookJournalDir: string;
  /** Files replaced or removed by a rebuild are kept here first: replaced/<time>/<host path>. */
  replacedDir: string;
  /** pacha.metrics.path (a node_exporter textfile, outside the state dir), when set. */
  metrics?: string;
}

export function statePaths(stateDir: string, metricsFile?: string): StatePaths {
  return {
    ...(metricsFile !== undefined ? { metrics: metricsFile } : {}),
    dir: stateDir,
    repo: path.join(stateDir, 'repo'),
    watchList: path.join(stateDir, 'watched'),
    statCache: path.join(stateDir, 'statcache'),
    status: path.join(stateDir, 'status.json'),
    report: path.join(stateDir, 'report.json'),
    lock: path.join(stateDir, 'pacha.pid'),
    hookJournalDir: path.join(stateDir, 'hooks'),
    replacedDir: path.join(stateDir, 'replaced'),
  };
}

/** Create the state dir private to its owner (it holds copies of every watched file). */
export function ensureStateDir(stateDir: string): void {
  fs.mkdirSync(stateDir, { recursive: true, mode: 0o700 });
}

/**
 * Write a file atomically: temp file in the same dir, fsync, rename. `durable: false` skips the
 * fsync, for a file that is rewritten often and whose loss in a crash costs nothing (a status):
 * its reader must then take a torn file for a missing one.
 */
export function writeFileAtomic(file: string, data: string | Uint8Array, mode = 0o600, opts: { durable?: boolean } = {}): void {
  const tmp = `${file}.tmp-${process.pid}-${Date.now()}`;
  const fd = fs.openSync(tmp, 'w', mode);
  try {
    fs.writeSync(fd, typeof data === 'string' ? Buffer.from(data) : data);
    if (opts.durable !== false) fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  fs.renameSync(tmp, file);
}

export function readJson<T>(file: string): T | undefined {
  try {
    return JSON.parse(fs.readFileSync(file, 'utf8')) as T;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
}
