import type { CommandModule } from 'yargs';
import { runCli } from '@pacha/shared/cli-run';
import { serveCommand } from './commands/serve.ts';
import { authorizeCommand } from './commands/authorize.ts';
import { hostsCommand } from './commands/hosts.ts';
import { logCommand } from './commands/log.ts';
import { showCommand } from './commands/show.ts';
import { verifyCommand } from './commands/verify.ts';

const commands: CommandModule<any, any>[] = [serveCommand, authorizeCommand, hostsCommand, logCommand, showCommand, verifyCommand];

/** Run the master CLI; resolves to the exit code (0 ok, 1 failure, 2 usage). */
export function run(argv: string[]): Promise<number> {
  return runCli({ name: 'pacha-master', usage: 'The pacha master: keeps one snapshot history per host and serves it over SFTP.', commands }, argv);
}
