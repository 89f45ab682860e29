import type { CommandModule } from 'yargs';
import { PachaError } from '@pacha/shared/errors';

export const reportCommand: CommandModule = {
  command: 'report',
  describe: 'timings of the phases of the last snapshot, push and rebuild',
  handler: () => {
    throw new PachaError('report: not built yet');
  },
};
