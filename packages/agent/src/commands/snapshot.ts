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
      // Loaded here, not at start-up: other commands need none of it.
      const { takeSnapshot } = await import('@pacha/shared/snapshot/engine');
      const { summaryLine } = await import('@pacha/shared/format/snapshot');
      const r = await takeSnapshot(ctx, { message: args.message });
      recordSnapshot(ctx.state, r);
      const text = r.commit ? `${r.commit} ${summaryLine(r.summary)}` : 'no changes';
      ctx.print(text, r);
    } finally {
      lock.release();
    }
  },
};
