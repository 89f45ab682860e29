import type { CommandModule } from 'yargs';
import { PACHA_VERSION, SNAPSHOT_FORMAT } from '@pacha/shared/version';

export const versionCommand: CommandModule<{ json?: boolean }, { json?: boolean }> = {
  command: 'version',
  describe: 'print the version of pacha and of its snapshot format',
  handler: (argv) => {
    const info = { version: PACHA_VERSION, snapshotFormat: SNAPSHOT_FORMAT, node: process.version };
    if (argv.json) process.stdout.write(JSON.stringify(info, null, 2) + '\n');
    else process.stdout.write(`pacha ${PACHA_VERSION} (snapshot format ${SNAPSHOT_FORMAT}, node ${process.version})\n`);
  },
};
