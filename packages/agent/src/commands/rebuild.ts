import type { CommandModule } from 'yargs';
import { PachaError } from '@pacha/shared/errors';

export const rebuildCommand: CommandModule = {
  command: 'rebuild <host>',
  describe: 'rebuild a lost host from its history on the master',
  handler: () => {
    throw new PachaError('rebuild <host>: not built yet');
  },
};
