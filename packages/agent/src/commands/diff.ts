import type { CommandModule } from 'yargs';
import { PachaError } from '@pacha/shared/errors';

export const diffCommand: CommandModule = {
  command: 'diff',
  describe: 'show how the live files differ from the last snapshot (changes nothing)',
  handler: () => {
    throw new PachaError('diff: not built yet');
  },
};
