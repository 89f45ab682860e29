import type { CommandModule } from 'yargs';
import { PachaError } from '@pacha/shared/errors';

export const hostsCommand: CommandModule = {
  command: 'hosts',
  describe: 'list hosts with last snapshot time, commits and size',
  handler: () => {
    throw new PachaError('hosts: not built yet');
  },
};
