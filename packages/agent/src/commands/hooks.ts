import type { CommandModule } from 'yargs';
import { PachaError } from '@pacha/shared/errors';

export const hooksCommand: CommandModule = {
  command: 'hooks [host]',
  describe: 'list rebuild hooks with their last run',
  handler: () => {
    throw new PachaError('hooks [host]: not built yet');
  },
};
