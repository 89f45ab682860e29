import type { Argv, CommandModule } from 'yargs';
import { escapeTerminal } from '@pacha/shared/terminal';
import { masterLayout } from '../layout.ts';
import { hostLog } from '../inspect.ts';
import { hostsPathOption } from './hosts.ts';

interface Args {
  host: string;
  'hosts-path'?: string;
  limit?: number;
  json?: boolean;
}

export const logCommand: CommandModule<Args, Args> = {
  command: 'log <host>',
  describe: "a host's snapshot history, newest first",
  builder: (y) =>
    hostsPathOption(y)
      .positional('host', { type: 'string', demandOption: true, describe: 'host name (a folder under the hosts path)' })
      .option('limit', { alias: 'n', type: 'number', describe: 'show at most this many snapshots' }) as Argv<Args>,
  handler: (args) => {
    const { hostsPath } = masterLayout({ hostsPath: args['hosts-path'] });
    const entries = hostLog(hostsPath, args.host, args.limit);
    if (args.json) {
      process.stdout.write(JSON.stringify({ host: args.host, snapshots: entries }, null, 2) + '\n');
      return;
    }
    if (entries.length === 0) {
      process.stdout.write(`${args.host} has no snapshot yet\n`);
      return;
    }
    // A host writes its own commit messages: escaped before they reach the operator's terminal.
    for (const e of entries) process.stdout.write(`${e.commit.slice(0, 12)}  ${e.time}  ${escapeTerminal(e.message.split('\n')[0])}\n`);
  },
};
