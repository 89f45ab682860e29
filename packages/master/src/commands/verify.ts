import type { CommandModule } from 'yargs';
import { PachaError } from '@pacha/shared/errors';

export const verifyCommand: CommandModule = {
  command: 'verify [host]',
  describe: 'check every ref, pack and object; non-zero exit on damage',
  handler: () => {
    throw new PachaError('verify [host]: not built yet');
  },
};
