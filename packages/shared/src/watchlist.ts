import fs from 'node:fs';
import path from 'node:path';
import { UsageError, errnoOf, errorMessage } from './errors.ts';
import { hostPath } from './paths.ts';
import type { PachaConfig } from './config.ts';
import type { StatePaths } from './state.ts';
import { writeFileAtomic } from './state.ts';
import { comparePaths } from './format/entry.ts';

// The watch list: host paths (absolute, normalised) of directories and single files.
// Stored one per line in the state dir; merged with pacha.watch from the config.

export function normaliseHostPath(p: string, cwdHost = process.cwd()): string {
  const abs = path.posix.isAbsolute(p) ? p : path.posix.join(cwdHost, p);
  const norm = path.posix.normalize(abs);
  return norm.length > 1 ? norm.replace(/\/+$/, '') : norm;
}

/** Is `inner` the same as or below `outer`? */
export function isWithin(inner: string, outer: string): boolean {
  return inner === outer || outer === '/' || inner.startsWith(outer + '/');
}

export function readWatchList(state: StatePaths): string[] {
  let text: string;
  try {
    text = fs.readFileSync(state.watchList, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw e;
  }
  return text.split('\n').filter((l) => l.length > 0 && !l.startsWith('#'));
}

function writeWatchList(state: StatePaths, list: string[]): void {
  writeFileAtomic(state.watchList, list.map((p) => p + '\n').join(''), 0o644);
}

/**
 * The roots of a snapshot: watch list plus pacha.watch, with nested paths folded into the
 * outermost one (watching /etc and /etc/nginx snapshots /etc once).
 */
export function effectiveRoots(config: PachaConfig, state: StatePaths): string[] {
  return foldNested([...readWatchList(state), ...config.watch]);
}

export function foldNested(paths: string[]): string[] {
  const sorted = [...new Set(paths)].sort(comparePaths);
  const out: string[] = [];
  for (const p of sorted) {
    if (!out.some((o) => isWithin(p, o))) out.push(p);
  }
  return out;
}

export interface WatchChange {
  added: string[];
  /** Already watched, or inside a watched path. */
  alreadyCovered: { path: string; by: string }[];
  /** Watched paths now inside a newly added one (dropped from the list). */
  folded: string[];
}

/** Add paths (host paths; relative ones against cwdHost). Missing paths are a UsageError. */
export function addWatched(config: PachaConfig, state: StatePaths, paths: string[], cwdHost?: string): WatchChange {
  const list = readWatchList(state);
  const change: WatchChange = { added: [], alreadyCovered: [], folded: [] };
  const missing: string[] = [];
  for (const raw of paths) {
    const p = normaliseHostPath(raw, cwdHost);
    let st: fs.Stats;
    try {
      st = fs.lstatSync(hostPath(p, config.root));
    } catch (e) {
      const code = errnoOf(e);
      if (code !== 'ENOENT' && code !== 'ENOTDIR') throw new UsageError(`cannot watch ${p}: ${errorMessage(e)}`);
      missing.push(p);
      continue;
    }
    if (!st.isDirectory() && !st.isFile() && !st.isSymbolicLink()) {
      throw new UsageError(`cannot watch ${p}: it is not a directory, a file or a symlink`);
    }
    const by = [...list, ...config.watch].find((w) => isWithin(p, w));
    if (by !== undefined) {
      change.alreadyCovered.push({ path: p, by });
      continue;
    }
    const inner = list.filter((w) => isWithin(w, p));
    change.folded.push(...inner);
    for (const w of inner) list.splice(list.indexOf(w), 1);
    list.push(p);
    change.added.push(p);
  }
  if (missing.length > 0) {
    throw new UsageError(`cannot watch ${missing.join(', ')}: no such file or directory${config.root !== '/' ? ` (under root ${config.root})` : ''}`, 'name existing directories or files');
  }
  list.sort(comparePaths);
  writeWatchList(state, list);
  return change;
}

export interface UnwatchChange {
  removed: string[];
  notWatched: string[];
  /** Paths that stay watched because they come from pacha.watch in the config. */
  fromConfig: string[];
}

export function removeWatched(config: PachaConfig, state: StatePaths, paths: string[], cwdHost?: string): UnwatchChange {
  const list = readWatchList(state);
  const out: UnwatchChange = { removed: [], notWatched: [], fromConfig: [] };
  for (const raw of paths) {
    const p = normaliseHostPath(raw, cwdHost);
    const i = list.indexOf(p);
    if (i >= 0) {
      list.splice(i, 1);
      out.removed.push(p);
    } else if (config.watch.includes(p)) out.fromConfig.push(p);
    else out.notWatched.push(p);
  }
  writeWatchList(state, list);
  return out;
}
