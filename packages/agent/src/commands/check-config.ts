import type { CommandModule } from 'yargs';
import { PachaError } from '@pacha/shared/errors';

export const checkConfigCommand: CommandModule = {
  command: 'check-config',
  describe: 'print the effective configuration and its problems',
  handler: () => {
    throw new PachaError('check-config: not built yet');
  },
};
