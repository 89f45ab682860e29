import type { CommandModule } from 'yargs';
import { PachaError } from '@pacha/shared/errors';

export const watchCommand: CommandModule = {
  command: 'watch <paths..>',
  describe: 'add directories or files to the watch list',
  handler: () => { throw new PachaError('watch: not built yet'); },
};
export const unwatchCommand: CommandModule = {
  command: 'unwatch <paths..>',
  describe: 'remove paths from the watch list',
  handler: () => { throw new PachaError('unwatch: not built yet'); },
};
export const watchedCommand: CommandModule = {
  command: 'watched',
  describe: 'list watched paths',
  handler: () => { throw new PachaError('watched: not built yet'); },
};
