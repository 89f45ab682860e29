import yargs, { type CommandModule } from 'yargs';
import { PachaError, errorMessage } from '@pacha/shared/errors';
import { redact } from '@pacha/shared/log';
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
export async function run(argv: string[]): Promise<number> {
  let usageFailed = false;
  const parser = yargs(argv)
    .scriptName('pacha')
    .usage('$0 <command> [options]\n\nSnapshot this host\'s configuration to a pacha master, and rebuild a lost host from it.')
    .option('config', { type: 'string', describe: 'configuration file (default: /etc/pacha.conf under PACHA_ROOT_DIR; env PACHA_CONFIG)' })
    .option('verbose', { alias: 'v', type: 'boolean', describe: 'more detail' })
    .option('json', { type: 'boolean', describe: 'machine-readable output' })
    .command(commands)
    .demandCommand(1, 'name a command (pacha --help lists them)')
    .strict()
    .help()
    .alias('help', 'h')
    .version(false)
    .wrap(Math.min(110, process.stdout.columns ?? 100))
    .fail((msg, err) => {
      if (err) throw err;
      usageFailed = true;
      process.stderr.write(`error: ${msg}\n(pacha --help shows the usage)\n`);
    })
    .exitProcess(false);
  try {
    await parser.parseAsync();
    if (usageFailed) return 2;
    return typeof process.exitCode === 'number' ? process.exitCode : 0;
  } catch (err) {
    if (err instanceof PachaError) {
      process.stderr.write(`error: ${redact(err.message)}\n`);
      if (err.hint) process.stderr.write(`hint: ${err.hint}\n`);
      return err.exitCode;
    }
    process.stderr.write(`error: ${redact(errorMessage(err))}\n`);
    if (process.env.PACHA_DEBUG) process.stderr.write(`${(err as Error).stack}\n`);
    return 1;
  }
}
