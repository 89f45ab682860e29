import type { CommandModule } from 'yargs';
import { PACHA_VERSION } from '@pacha/shared/version';
import { FORMAT_VERSION } from '@pacha/shared/format/snapshot';

export const versionCommand: CommandModule<{ json?: boolean }, { json?: boolean }> = {
  command: 'version',
  describe: 'print the version of pacha and of its snapshot format',
  handler: (argv) => {
    const info = { version: PACHA_VERSION, snapshotFormat: FORMAT_VERSION, node: process.version };
    if (argv.json) process.stdout.write(JSON.stringify(info, null, 2) + '\n');
    else process.stdout.write(`pacha ${PACHA_VERSION} (snapshot format ${FORMAT_VERSION}, node ${process.version})\n`);
  },
};
