import type { CommandModule } from 'yargs';
import { PachaError } from '@pacha/shared/errors';

export const statusCommand: CommandModule = {
  command: 'status',
  describe: 'daemon, last snapshot, last push, pending, last error',
  handler: () => {
    throw new PachaError('status: not built yet');
  },
};
