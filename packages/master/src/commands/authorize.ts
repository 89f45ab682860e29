import fs from 'node:fs';
import type { CommandModule } from 'yargs';
import { UsageError } from '@pacha/shared/errors';
import { authorizeHost } from '../authorized-keys.ts';
import { masterLayout } from '../layout.ts';

interface AuthorizeArgs {
  host: string;
  pubkey: string;
  'hosts-path'?: string;
  'keys-dir'?: string;
  json?: boolean;
}

export const authorizeCommand: CommandModule<{}, AuthorizeArgs> = {
  command: 'authorize <host> <pubkey>',
  describe: "let a host push with its public key (PUBKEY-FILE: the host's .pub file, - for stdin)",
  builder: (y) =>
    y
      .positional('host', { type: 'string', demandOption: true, describe: 'host name (also its SSH user name)' })
      .positional('pubkey', { type: 'string', demandOption: true, describe: 'public key file' })
      .option('hosts-path', { type: 'string', describe: 'folder holding one folder per host (as for serve)' })
      .option('keys-dir', { type: 'string', describe: "hosts' public keys (as for serve)" }),
  handler: (args) => {
    let text: string;
    try {
      text = fs.readFileSync(args.pubkey === '-' ? 0 : args.pubkey, 'utf8');
    } catch (e) {
      throw new UsageError(`cannot read public key file ${args.pubkey}: ${(e as Error).message}`);
    }
    const layout = masterLayout({ hostsPath: args['hosts-path'], keysDir: args['keys-dir'] });
    const r = authorizeHost(layout, args.host, text, args.pubkey);
    if (args.json) process.stdout.write(JSON.stringify(r, null, 2) + '\n');
    else process.stdout.write(`${r.added ? 'authorised' : 'already authorised'}: ${r.host} with ${r.type} ${r.fingerprint} (${r.keysFile})\n`);
  },
};
