import type { CommandModule } from 'yargs';
import { PachaError } from '@pacha/shared/errors';

export const pushCommand: CommandModule = {
  command: 'push',
  describe: 'send the snapshots the master lacks',
  handler: () => {
    throw new PachaError('push: not built yet');
  },
};
