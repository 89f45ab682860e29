import type { CommandModule } from 'yargs';
import { PachaError } from '@pacha/shared/errors';

export const snapshotCommand: CommandModule = {
  command: 'snapshot',
  describe: 'take one snapshot of everything watched now',
  handler: () => {
    throw new PachaError('snapshot: not built yet');
  },
};
