import type { CommandModule } from 'yargs';
import { addWatched, effectiveRoots, readWatchList, removeWatched } from '@pacha/shared/watchlist';
import { toHostPath } from '@pacha/shared/paths';
import { createContext, type GlobalArgs } from '../context.ts';

interface PathsArgs extends GlobalArgs {
  paths: string[];
}

// Relative paths are taken against the current directory, seen as a host path (under the root dir).
function cwdHost(root: string): string {
  return toHostPath(process.cwd(), root) ?? '/';
}

export const watchCommand: CommandModule<GlobalArgs, PathsArgs> = {
  command: 'watch <paths..>',
  describe: 'add directories or files to the watch list',
  builder: (y) => y.positional('paths', { type: 'string', array: true, demandOption: true, describe: 'host paths (absolute, or relative to the current directory)' }),
  handler: (argv) => {
    const ctx = createContext(argv);
    const change = addWatched(ctx.config, ctx.state, argv.paths, cwdHost(ctx.config.root));
    const lines = [
      ...change.added.map((p) => `watching ${p}`),
      ...change.alreadyCovered.map((c) => (c.path === c.by ? `already watched: ${c.path}` : `already watched: ${c.path} (inside ${c.by})`)),
      ...change.folded.map((p) => `${p} is now covered by a watched parent and was folded into it`),
    ];
    ctx.print(lines.join('\n'), change);
  },
};

export const unwatchCommand: CommandModule<GlobalArgs, PathsArgs> = {
  command: 'unwatch <paths..>',
  describe: 'remove paths from the watch list (the next snapshot records their files as gone)',
  builder: (y) => y.positional('paths', { type: 'string', array: true, demandOption: true }),
  handler: (argv) => {
    const ctx = createContext(argv);
    const change = removeWatched(ctx.config, ctx.state, argv.paths, cwdHost(ctx.config.root));
    const lines = [
      ...change.removed.map((p) => `no longer watching ${p}`),
      ...change.notWatched.map((p) => `not watched: ${p}`),
      ...change.fromConfig.map((p) => `${p} is watched by pacha.watch in ${ctx.config.file}: remove it there`),
    ];
    ctx.print(lines.join('\n'), change);
    if (change.removed.length === 0) process.exitCode = 1;
  },
};

export const watchedCommand: CommandModule<GlobalArgs, GlobalArgs> = {
  command: 'watched',
  describe: 'list watched paths (watch list and pacha.watch)',
  handler: (argv) => {
    const ctx = createContext(argv);
    const list = readWatchList(ctx.state);
    const roots = effectiveRoots(ctx.config, ctx.state);
    const rows = roots.map((p) => ({ path: p, source: list.includes(p) ? 'watch list' : 'pacha.watch' }));
    ctx.print(rows.length === 0 ? 'nothing is watched (add paths with: pacha watch PATH...)' : rows.map((r) => `${r.path}${r.source === 'pacha.watch' ? '  (pacha.watch)' : ''}`).join('\n'), rows);
  },
};
