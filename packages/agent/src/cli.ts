import type { CommandModule } from 'yargs';
import { runCli } from '@pacha/shared/cli-run';
import { watchCommand, unwatchCommand, watchedCommand } from './commands/watch.ts';
import { snapshotCommand } from './commands/snapshot.ts';
import { diffCommand } from './commands/diff.ts';
import { logCommand } from './commands/log.ts';
import { pushCommand } from './commands/push.ts';
import { daemonCommand } from './commands/daemon.ts';
import { statusCommand } from './commands/status.ts';
import { reportCommand } from './commands/report.ts';
import { rebuildCommand } from './commands/rebuild.ts';
import { hooksCommand } from './commands/hooks.ts';
import { trustMasterCommand } from './commands/trust-master.ts';
import { checkConfigCommand } from './commands/check-config.ts';
import { versionCommand } from './commands/version.ts';

// Commands are thin: each parses its options and calls the library.
const commands: CommandModule<any, any>[] = [
  watchCommand, unwatchCommand, watchedCommand,
  snapshotCommand, pushCommand, daemonCommand,
  statusCommand, reportCommand, logCommand, diffCommand,
  rebuildCommand, hooksCommand, trustMasterCommand,
  checkConfigCommand, versionCommand,
];

/** Run the CLI; resolves to the exit code (0 ok, 1 failure, 2 usage). */
export function run(argv: string[]): Promise<number> {
  return runCli(
    {
      name: 'pacha',
      usage: "Snapshot this host's configuration to a pacha master, and rebuild a lost host from it.",
      commands,
      options: (y) => y.option('config', { type: 'string', describe: 'configuration file (default: /etc/pacha.conf under PACHA_ROOT_DIR; env PACHA_CONFIG)' }),
    },
    argv,
  );
}
