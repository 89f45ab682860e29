import { isAscii } from 'node:buffer';
import { Worker } from 'node:worker_threads';
import { hostPath } from '../paths.ts';
import { readStatCache, SIG_VALID, type StatCacheFile, TYPE_DIR, TYPE_FILE, TYPE_MASK } from './stat-cache.ts';

// A full re-scan spends most of its time in lstat, one path at a time: one call costs about
// 2 µs, and Node cannot batch them. A worker thread takes a second core: it checks the cached
// records (files, directories, symlinks) from the last backwards while the scan works forwards,
// and they meet in the middle.
//
// They share one byte per cache record. 0: nobody has looked; MATCH/DIFFERS: an lstat
// agreed/disagreed with the cached signature; CLAIMED: the scan took the record itself (the
// quick re-scan then writes its own verdict, for a full scan that may follow). Each side moves a
// record away from 0 with compareExchange, so every record is looked at once (give or take the
// one both reach together) and the worker stops where the scan has been.
//
// A match is sound whenever it is made: the cached signature was stored only when the file had
// not changed within the clock tick of its snapshot, so any later write gives another signature.

export const UNSEEN = 0;
export const MATCH = 1;
export const DIFFERS = 2;
export const CLAIMED = 3;

/** Below this many records the worker's start-up (some 30 ms of a core) buys nothing. */
export const VERIFY_MIN_RECORDS = 20_000;

export interface StatVerifier {
  /** One byte per cache record, shared with the worker. */
  state: Uint8Array;
  /** How many records the worker has checked so far. */
  checked(): number;
  /** Stop the worker (it may still be checking records nobody needs). */
  stop(): void;
}

interface VerifyData {
  bytes: SharedArrayBuffer;
  state: SharedArrayBuffer;
  /** One Int32: records checked, updated now and then. */
  progress: SharedArrayBuffer;
  count: number;
  pathsAt: number;
  pathsLen: number;
  quickAt: number;
  pathAtAt: number;
  flagAt: number;
  /** Local path of the host root, ending in '/'. */
  prefix: string;
  /** How the paths decode: latin1 when all are ASCII (faster, the same strings). */
  encoding: 'latin1' | 'utf8';
  maxFileSize: number;
  constants: { typeMask: number; typeFile: number; typeDir: number; sigValid: number; unseen: number; match: number; differs: number };
}

/**
 * The worker's whole program. It runs from its source text (Function#toString), so it must not
 * refer to anything outside itself: it reaches modules with process.getBuiltinModule, which
 * also survives bundling.
 */
function verifyInWorker(): void {
  const { workerData } = process.getBuiltinModule('node:worker_threads');
  const fs = process.getBuiltinModule('node:fs');
  const d = workerData as VerifyData;
  const c = d.constants;
  const state = new Uint8Array(d.state);
  const progress = new Int32Array(d.progress);
  let checked = 0;
  const paths = Buffer.from(d.bytes, d.pathsAt, d.pathsLen);
  const quick = new Float64Array(d.bytes, d.quickAt, d.count * 5);
  const pathAt = new Uint32Array(d.bytes, d.pathAtAt, d.count);
  const flags = new Uint8Array(d.bytes, d.flagAt, d.count);
  let end = d.pathsLen - 1; // the NUL ending record i's path
  for (let i = d.count - 1; i >= 0; i--) {
    const f = flags[i];
    if ((f & c.sigValid) !== 0) {
      if (state[i] !== c.unseen) break;
      let st;
      try {
        st = fs.lstatSync(d.prefix + paths.toString(d.encoding, pathAt[i], end), { throwIfNoEntry: false });
      } catch {
        st = undefined; // the scan looks again and reports it
      }
      const o = i * 5;
      const type = f & c.typeMask;
      const kind = st === undefined ? false : type === c.typeFile ? st.isFile() && st.size <= d.maxFileSize : type === c.typeDir ? st.isDirectory() : st.isSymbolicLink();
      const same =
        st !== undefined && kind &&
        st.mtimeMs === quick[o + 3] && st.ctimeMs === quick[o + 4] && st.size === quick[o + 2] && st.ino === quick[o + 1] && st.dev === quick[o];
      if (Atomics.compareExchange(state, i, c.unseen, same ? c.match : c.differs) !== c.unseen) break;
      if (++checked % 1024 === 0) Atomics.store(progress, 0, checked);
    }
    end = pathAt[i] - 1;
  }
  Atomics.store(progress, 0, checked);
}

/**
 * Start checking the files of a loaded cache file in a worker; null when the cache is too small
 * to be worth it. The caller must stop() it when its scan is done.
 */
export function startStatVerifier(f: StatCacheFile, prefix: string, maxFileSize: number, onError: (e: Error) => void): StatVerifier | null {
  if (f.count < VERIFY_MIN_RECORDS) return null;
  const shared = new SharedArrayBuffer(f.count);
  const progress = new SharedArrayBuffer(4);
  const data: VerifyData = {
    bytes: f.bytes,
    state: shared,
    progress,
    count: f.count,
    pathsAt: f.pathsAt,
    pathsLen: f.pathsLen,
    quickAt: f.quickAt,
    pathAtAt: f.pathAtAt,
    flagAt: f.flagAt,
    prefix,
    encoding: isAscii(Buffer.from(f.bytes, f.pathsAt, f.pathsLen)) ? 'latin1' : 'utf8',
    maxFileSize,
    constants: { typeMask: TYPE_MASK, typeFile: TYPE_FILE, typeDir: TYPE_DIR, sigValid: SIG_VALID, unseen: UNSEEN, match: MATCH, differs: DIFFERS },
  };
  const worker = new Worker(`(${verifyInWorker.toString()})()`, { eval: true, workerData: data });
  worker.unref();
  // The scan never waits for the worker: whatever it has not done, the scan does itself.
  worker.on('error', onError);
  const done = new Int32Array(progress);
  return {
    state: new Uint8Array(shared),
    checked: () => Atomics.load(done, 0),
    stop: () => void worker.terminate(),
  };
}

/**
 * What goes before a host path (without its leading slash) to name it here: hostPath() without
 * its normalising, because the scan's paths are already clean and it runs once per path.
 */
export function localPrefix(root: string): string {
  return root === '/' ? '/' : hostPath('/', root).replace(/\/$/, '') + '/';
}

/**
 * The stat cache read, and its files being checked, before the snapshot code is even loaded:
 * a command calls this first thing, so that the worker's start-up and much of its work overlap
 * the loading and parsing that follow. Hand the result to takeSnapshot(), which uses it only
 * when it describes the snapshot it starts from (and stops the worker otherwise).
 */
export interface StatCachePrefetch {
  file: StatCacheFile | null;
  verifier: StatVerifier | null;
}

export function prefetchStatCache(statCache: string, root: string, maxFileSize: number, onError: (e: Error) => void): StatCachePrefetch {
  const file = readStatCache(statCache);
  return { file, verifier: file === null ? null : startStatVerifier(file, localPrefix(root), maxFileSize, onError) };
}
