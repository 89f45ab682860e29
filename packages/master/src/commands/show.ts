import type { CommandModule } from 'yargs';
import { PachaError } from '@pacha/shared/errors';

export const showCommand: CommandModule = {
  command: 'show <host> <path>',
  describe: 'print a file of a host as of a snapshot',
  handler: () => {
    throw new PachaError('show <host> <path>: not built yet');
  },
};
