import readline from 'node:readline/promises';
import type { CommandModule } from 'yargs';
import { UsageError } from '@pacha/shared/errors';
import { createContext, type GlobalArgs } from '../context.ts';

interface TrustArgs extends GlobalArgs {
  yes?: boolean;
}

export const trustMasterCommand: CommandModule<GlobalArgs, TrustArgs> = {
  command: 'trust-master',
  describe: "show the master's host key fingerprint and record it in known_hosts",
  builder: (y) => y.option('yes', { alias: 'y', type: 'boolean', describe: 'record without asking (check the fingerprint another way first)' }),
  handler: async (args) => {
    // Loaded on use: keeps start-up of the other commands short.
    const { trustMaster } = await import('@pacha/shared/transport/trust');
    const ctx = createContext(args, { ensureState: false });
    const interactive = process.stdin.isTTY === true;
    const result = await trustMaster(ctx.config, {
      show: (text) => {
        if (!ctx.json) process.stderr.write(text + '\n');
      },
      confirm: async (question) => {
        if (args.yes) return true;
        if (!interactive) {
          throw new UsageError('no terminal to confirm on: check the fingerprint shown above, then run pacha trust-master --yes');
        }
        const rl = readline.createInterface({ input: process.stdin, output: process.stderr });
        try {
          return /^y(es)?$/i.test((await rl.question(question)).trim());
        } finally {
          rl.close();
        }
      },
    });
    const text =
      result.status === 'match' ? `${result.master}: ${result.keyType} ${result.fingerprint} is already trusted (${result.knownHostsFile})`
      : result.recorded ? `recorded ${result.master} ${result.keyType} ${result.fingerprint} in ${result.knownHostsFile}`
      : 'not recorded';
    ctx.print(text, result);
    if (result.status !== 'match' && !result.recorded) process.exitCode = 1;
  },
};
