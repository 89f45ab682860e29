import type { CommandModule } from 'yargs';
import { PachaError } from '@pacha/shared/errors';

export const serveCommand: CommandModule = {
  command: 'serve',
  describe: 'run the embedded SFTP master',
  handler: () => {
    throw new PachaError('serve: not built yet');
  },
};
