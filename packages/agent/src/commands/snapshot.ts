import type { CommandModule } from 'yargs';
import { acquireLock } from '@pacha/shared/lock';
import { createContext, type GlobalArgs } from '../context.ts';

interface Args extends GlobalArgs {
  message?: string;
}

export const snapshotCommand: CommandModule<GlobalArgs, Args> = {
  command: 'snapshot',
  describe: 'take one snapshot of everything watched now',
  builder: (y) => y.option('message', { alias: 'm', type: 'string', describe: 'note added to the commit message' }),
  handler: async (args) => {
    const ctx = createContext(args);
    // Loaded here, not at start-up: every other command starts faster without the git code.
    const { summaryLine, takeSnapshot } = await import('@pacha/shared/snapshot/engine');
    const lock = acquireLock(ctx.state.lock, 'snapshot', ctx.log);
    try {
      const r = await takeSnapshot(ctx, { message: args.message });
      const text = r.commit ? `${r.commit} ${summaryLine(r.summary)}` : 'no changes';
      ctx.print(text, r);
    } finally {
      lock.release();
    }
  },
};
