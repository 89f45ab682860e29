import type { CommandModule } from 'yargs';
import { PachaError } from '@pacha/shared/errors';

export const daemonCommand: CommandModule = {
  command: 'daemon',
  describe: 'run the agent in the foreground: watch, snapshot, push',
  handler: () => {
    throw new PachaError('daemon: not built yet');
  },
};
