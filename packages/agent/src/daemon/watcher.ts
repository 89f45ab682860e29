import fs from 'node:fs';
import path from 'node:path';
import chokidar, { type FSWatcher } from 'chokidar';
import { hostPath, toHostPath } from '@pacha/shared/paths';
import { isWithin } from '@pacha/shared/watchlist';
import { ignoreMatcher } from '@pacha/shared/snapshot/ignore';

// Watches the roots with chokidar (native inotify, no polling). Events only mark host paths
// dirty: they carry no data, because chokidar can miss events (the reconcile scan covers those).
// An add or unlink also marks the parent directory (its listing and mtime changed), as long as
// the parent is inside a root. chokidar reports a change only when size, mtime or inode moved:
// a chmod, chown, setfacl, setcap or setfattr (inotify IN_ATTRIB) reaches us as a raw event.

export interface WatcherOptions {
  /** PACHA_ROOT_DIR ('/' on a real host). */
  root: string;
  /** Host paths to watch (directories or single files). */
  roots: string[];
  ignore: string[];
  onDirty(hostPath: string): void;
  /** The watcher cannot be trusted to have seen everything (errors, limits): reconcile. */
  onTrouble(reason: string): void;
}

export class TreeWatcher {
  private watcher: FSWatcher | undefined;
  private readonly opts: WatcherOptions;

  constructor(opts: WatcherOptions) {
    this.opts = opts;
  }

  /** Resolves once the initial scan is done and events are flowing. */
  start(): Promise<void> {
    const { root, roots, onDirty, onTrouble } = this.opts;
    const ignored = ignoreMatcher(this.opts.ignore);
    const host = (local: string) => toHostPath(local, root);
    const insideRoots = (hp: string) => roots.some((r) => isWithin(hp, r));
    const watcher = chokidar.watch(
      roots.map((r) => hostPath(r, root)),
      {
        ignoreInitial: true,
        followSymlinks: false,
        backend: 'native',
        atomic: false,
        ignored: (local: string) => {
          const hp = host(local);
          // Never ignore a root itself or the directories above it.
          return hp !== null && insideRoots(hp) && !roots.includes(hp) && ignored(hp);
        },
      },
    );
    this.watcher = watcher;
    watcher.on('all', (event, local) => {
      const hp = host(local);
      if (hp === null || !insideRoots(hp)) return;
      onDirty(hp);
      if (event === 'add' || event === 'addDir' || event === 'unlink' || event === 'unlinkDir') {
        const parent = path.posix.dirname(hp);
        if (parent !== hp && insideRoots(parent)) onDirty(parent);
      }
    });
    watcher.on('raw', (event, name, details) => {
      const dir = (details as { watchedPath?: unknown } | undefined)?.watchedPath;
      // A directory's IN_ATTRIB comes as 'rename' (inotify adds IN_ISDIR, which Node reads so).
      if ((event !== 'change' && event !== 'rename') || typeof name !== 'string' || typeof dir !== 'string') return;
      const mark = (local: string) => {
        const hp = host(local);
        if (hp !== null && insideRoots(hp) && (roots.includes(hp) || !ignored(hp))) onDirty(hp);
      };
      const child = path.join(dir, name);
      if (fs.existsSync(child)) mark(child);
      // The watched directory (or single file) itself: inotify names it by its base name.
      if (path.basename(dir) === name) mark(dir);
    });
    watcher.on('error', (err) => onTrouble(`watcher error: ${(err as Error)?.message ?? String(err)}`));
    return new Promise((resolve) => watcher.once('ready', () => resolve()));
  }

  /** Number of directories (and single files' parents) with an inotify watch. */
  watchedDirectories(): number {
    return this.watcher ? Object.keys(this.watcher.getWatched()).length : 0;
  }

  async close(): Promise<void> {
    const w = this.watcher;
    this.watcher = undefined;
    if (w) await w.close();
  }
}
