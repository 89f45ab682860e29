import type { CommandModule } from 'yargs';
import { acquireLock } from '@pacha/shared/lock';
import { createContext, type GlobalArgs } from '../context.ts';
import { recordSnapshot } from '../status/status-files.ts';

interface Args extends GlobalArgs {
  message?: string;
}

export const snapshotCommand: CommandModule<GlobalArgs, Args> = {
  command: 'snapshot',
  describe: 'take one snapshot of everything watched now',
  builder: (y) => y.option('message', { alias: 'm', type: 'string', describe: 'note added to the commit message' }),
  handler: async (args) => {
    const ctx = createContext(args);
    const lock = acquireLock(ctx.state.lock, 'snapshot', ctx.log);
    try {
      // First the stat cache, whose files a worker thread starts checking on another core while
      // the snapshot code loads (loaded here, not at start-up: other commands need none of it).
      const { prefetchStatCache } = await import('@pacha/shared/snapshot/stat-verify');
      const prefetch = prefetchStatCache(ctx.state.statCache, ctx.config.root, ctx.config.maxFileSize, (e) => ctx.log.debug(`stat-verify worker: ${e.message}`));
      const { summaryLine, takeSnapshot } = await import('@pacha/shared/snapshot/engine');
      const r = await takeSnapshot(ctx, { message: args.message, prefetch });
      recordSnapshot(ctx.state, r);
      const text = r.commit ? `${r.commit} ${summaryLine(r.summary)}` : 'no changes';
      ctx.print(text, r);
    } finally {
      lock.release();
    }
  },
};
