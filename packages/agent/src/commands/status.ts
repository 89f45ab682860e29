import type { CommandModule } from 'yargs';
import { PachaError, errorMessage } from '@pacha/shared/errors';
import { readStatus } from '../status/status-files.ts';
import { createContext, type GlobalArgs } from '../context.ts';

export const statusCommand: CommandModule<GlobalArgs, GlobalArgs> = {
  command: 'status',
  describe: 'daemon alive, watched paths, last snapshot, last push, pending, last error',
  handler: async (args) => {
    // Loaded on use: keeps start-up of the other commands short.
    const { gatherStatus, formatStatus } = await import('../status/status-view.ts');
    const ctx = createContext(args, { ensureState: false });
    try {
      readStatus(ctx.state);
    } catch (e) {
      throw new PachaError(`cannot read ${ctx.state.status}: ${errorMessage(e)}`);
    }
    const view = await gatherStatus(ctx.config, ctx.state);
    ctx.print(formatStatus(view), view);
  },
};
