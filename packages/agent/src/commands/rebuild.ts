import readline from 'node:readline';
import type { Argv, CommandModule } from 'yargs';
import { UsageError, errorMessage } from '@pacha/shared/errors';
import { DEFAULT_HOOK_TIMEOUT_SECONDS } from '@pacha/shared/rebuild/hooks';
import { SELINUX_MODES, type SelinuxMode } from '@pacha/shared/xattr/xattr';
import { openTransport } from '@pacha/shared/transport/open';
import { createContext, type GlobalArgs } from '../context.ts';
import { recordRebuild } from '../status/status-files.ts';

interface RebuildArgs extends GlobalArgs {
  host: string;
  yes?: boolean;
  'dry-run'?: boolean;
  at?: string;
  only?: string;
  'rerun-hooks'?: boolean;
  delete?: boolean;
  verify?: boolean;
  'hook-timeout'?: number;
  packages?: boolean;
  accounts?: boolean;
  selinux?: SelinuxMode;
  '--'?: (string | number)[];
}

/** Wait for Enter on the terminal (Ctrl-C ends the process as usual). */
function askEnter(question: string): Promise<void> {
  return new Promise((resolve) => {
    const rl = readline.createInterface({ input: process.stdin, output: process.stderr });
    rl.question(`${question} `, () => {
      rl.close();
      resolve();
    });
  });
}

export const rebuildCommand: CommandModule<GlobalArgs, RebuildArgs> = {
  command: 'rebuild <host>',
  describe: 'rebuild a lost host from its history on the master (also: pacha --rebuild HOST)',
  builder: (y: Argv<GlobalArgs>) =>
    y
      .parserConfiguration({ 'populate--': true })
      .positional('host', { type: 'string', demandOption: true, describe: "the host's name on the master" })
      .option('yes', { alias: 'y', type: 'boolean', describe: 'do not ask for confirmation' })
      .option('dry-run', { type: 'boolean', describe: 'fetch and validate, print every difference, change nothing' })
      .option('at', { type: 'string', describe: 'restore an older snapshot: a commit id or an ISO time (the newest snapshot at or before it)' })
      .option('only', { type: 'string', describe: 'restore only this path (a subtree inside the snapshot roots)' })
      .option('rerun-hooks', { type: 'boolean', describe: 'run every hook, even those that already succeeded with the same content' })
      .option('delete', { type: 'boolean', describe: 'also remove what is under the roots but not in the snapshot (kept under <state>/replaced/ first)' })
      .option('verify', { type: 'boolean', describe: 'read back every restored path and compare it with the snapshot' })
      .option('accounts', { type: 'boolean', default: true, describe: 'create the recorded users and groups the host lacks (--no-accounts: skip)' })
      .option('packages', { type: 'boolean', default: true, describe: 'install the recorded manual packages the host lacks, pinned where the archive has the version (--no-packages: skip)' })
      .option('hook-timeout', { type: 'number', default: DEFAULT_HOOK_TIMEOUT_SECONDS, describe: 'seconds a hook may run before it is stopped' })
      .option('selinux', {
        choices: SELINUX_MODES,
        default: 'auto' as SelinuxMode,
        describe: 'SELinux labels (security.selinux): auto restores them where this host has SELinux enabled, force always, skip never',
      })
      .example('$0 rebuild web1', 'rebuild web1 from the newest snapshot, asking first')
      .example('$0 rebuild web1 --yes -- /usr/sbin/nginx -g "daemon off;"', 'rebuild, then run a container entrypoint') as Argv<RebuildArgs>,
  handler: async (args) => {
    // The restore's fsyncs wait in libuv's thread pool: with more threads, more of them share
    // one journal commit. Takes effect because nothing has used the pool yet at this point.
    process.env.UV_THREADPOOL_SIZE ??= '32';
    const followUp = (args['--'] ?? []).map(String);
    const dryRun = args['dry-run'] === true;
    const interactive = process.stdin.isTTY === true;
    if (!args.yes && !dryRun && !interactive) {
      throw new UsageError('no terminal to confirm the rebuild on: pass --yes to rebuild without asking (or --dry-run to only see the plan)');
    }
    if (dryRun && followUp.length) throw new UsageError('-- CMD cannot be combined with --dry-run (nothing is rebuilt to run it on)');
    const ctx = createContext(args, { ensureState: false });
    // The SSH handshake (the master's replies, its key verified as always) goes on while the
    // rebuild's modules load; the rebuild waits for it, uses it and closes it.
    const connecting = openTransport(ctx.config, ctx.log);
    connecting.catch(() => undefined); // its failure is the rebuild's, reported there
    // Loaded on use: keeps start-up of the other commands short.
    const { rebuildHost } = await import('@pacha/shared/rebuild/rebuild');
    const { runFollowUp } = await import('@pacha/shared/rebuild/followup');
    const result = await rebuildHost(
      { config: ctx.config, state: ctx.state, log: ctx.log },
      {
        host: args.host,
        yes: args.yes === true,
        dryRun,
        at: args.at,
        only: args.only,
        rerunHooks: args['rerun-hooks'] === true,
        deleteExtra: args.delete === true,
        verify: args.verify === true,
        hookTimeoutSeconds: args['hook-timeout'],
        noAccounts: args.accounts === false,
        noPackages: args.packages === false,
        selinux: args.selinux,
        connecting,
        confirm: interactive ? askEnter : undefined,
        out: ctx.json ? () => undefined : (l) => process.stdout.write(l + '\n'),
        onOutcome: (r) => {
          try {
            recordRebuild(ctx.state, r);
          } catch (e) {
            ctx.log.warn(`cannot record the ${r.outcome === 'ok' ? '' : 'failed '}rebuild in ${ctx.state.status}: ${errorMessage(e)}`);
          }
        },
      },
    );
    if (ctx.json) ctx.print('', result);
    else if (result.outcome === 'ok') {
      const c = result.counts;
      ctx.print(
        `Rebuilt ${result.host} at ${result.commit.slice(0, 12)}: ${c.created} created, ${c.replaced} replaced, ${c.unchanged} unchanged, ${c.deleted} deleted, ` +
          `${c.bytes} bytes in ${result.seconds.toFixed(1)} s` +
          (result.accountsCreated?.length ? `\nAccounts created: ${result.accountsCreated.join(', ')}` : '') +
          (result.packagesInstalled?.length ? `\nPackages installed: ${result.packagesInstalled.join(' ')}` : '') +
          (result.keptUnder ? `\nReplaced and deleted files are kept under ${result.keptUnder}` : ''),
      );
    }
    if (followUp.length && result.outcome === 'ok') {
      ctx.log.info(`running ${followUp.join(' ')}`);
      process.exitCode = await runFollowUp(followUp, { PACHA_HOST: result.host, PACHA_COMMIT: result.commit, PACHA_ROOT_DIR: ctx.config.root });
    }
  },
};
