import type { Argv, CommandModule } from 'yargs';
import { masterLayout } from '../layout.ts';
import { showFile } from '../inspect.ts';
import { hostsPathOption } from './hosts.ts';

interface Args {
  host: string;
  path: string;
  at?: string;
  'hosts-path'?: string;
  verbose?: boolean;
  json?: boolean;
}

export const showCommand: CommandModule<Args, Args> = {
  command: 'show <host> <path>',
  describe: 'print a file of a host as of a snapshot (-v: with its metadata line)',
  builder: (y) =>
    hostsPathOption(y)
      .positional('host', { type: 'string', demandOption: true })
      .positional('path', { type: 'string', demandOption: true, describe: 'absolute path on the host, e.g. /etc/ssh/sshd_config' })
      .option('at', { type: 'string', describe: 'snapshot: commit id (or prefix) or ISO time (last snapshot at or before it); default the latest' }) as Argv<Args>,
  handler: (args) => {
    const { hostsPath } = masterLayout({ hostsPath: args['hosts-path'] });
    const f = showFile(hostsPath, args.host, args.path, args.at);
    if (args.json) {
      const text = f.content.toString('utf8');
      const isText = Buffer.from(text, 'utf8').equals(f.content);
      process.stdout.write(JSON.stringify({
        host: args.host, path: args.path, commit: f.commit, time: f.time, type: f.type, metadata: f.metadata ?? null,
        ...(isText ? { content: text } : { contentBase64: f.content.toString('base64') }),
      }, null, 2) + '\n');
      return;
    }
    if (args.verbose) {
      process.stderr.write(`# ${args.host}:${args.path} at ${f.commit} (${f.time})${f.type === 'symlink' ? ', a symlink to:' : ''}\n`);
      process.stderr.write(`# metadata: ${f.metadata ?? '(no metadata line)'}\n`);
    }
    process.stdout.write(f.content);
  },
};
