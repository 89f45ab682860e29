import type { CommandModule } from 'yargs';
import { PachaError } from '@pacha/shared/errors';

export const logCommand: CommandModule = {
  command: 'log <host>',
  describe: "a host's snapshot history",
  handler: () => {
    throw new PachaError('log <host>: not built yet');
  },
};
