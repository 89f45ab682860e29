import type { CommandModule } from 'yargs';
import { PachaError } from '@pacha/shared/errors';

export const authorizeCommand: CommandModule = {
  command: 'authorize <host> <pubkey>',
  describe: 'let a host push with its public key',
  handler: () => {
    throw new PachaError('authorize <host> <pubkey>: not built yet');
  },
};
