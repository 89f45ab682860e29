import type { CommandModule } from 'yargs';
import { PachaError } from '@pacha/shared/errors';

export const trustMasterCommand: CommandModule = {
  command: 'trust-master',
  describe: "show the master's host key fingerprint and record it",
  handler: () => {
    throw new PachaError('trust-master: not built yet');
  },
};
