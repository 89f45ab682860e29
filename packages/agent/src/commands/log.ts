import type { CommandModule } from 'yargs';
import { UsageError } from '@pacha/shared/errors';
import { checkHostName } from '@pacha/shared/master-tree';
import type { SnapshotInfo } from '@pacha/shared/snapshot/read';
import { summaryLine } from '@pacha/shared/format/snapshot';
import { escapeTerminal } from '@pacha/shared/terminal';
import type { HostChanges } from '@pacha/shared/host/history';
import { createContext, type GlobalArgs } from '../context.ts';

interface Args extends GlobalArgs {
  host?: string;
  n?: number;
  packages?: boolean;
}

function line(s: SnapshotInfo): string {
  const first = s.message.split('\n')[0];
  // The message comes from the repository: escaped for the terminal (--json keeps it exact).
  return `${s.time.toISOString()}  ${s.commit.slice(0, 12)}  ${s.summary ? summaryLine(s.summary) : escapeTerminal(first)}`;
}

export const logCommand: CommandModule<GlobalArgs, Args> = {
  command: 'log [host]',
  describe: 'snapshot history (newest first): time, commit, what changed',
  builder: (y) =>
    y
      .positional('host', { type: 'string', describe: "another host's history on the master (default: this host)" })
      .option('n', { type: 'number', describe: 'show at most N snapshots' })
      .option('packages', { alias: 'p', type: 'boolean', describe: 'list the package and account changes of each snapshot (+installed, -removed, old → new version)' }),
  handler: async (args) => {
    const ctx = createContext(args, { ensureState: false });
    if (args.n !== undefined && (!Number.isInteger(args.n) || args.n < 1)) throw new UsageError(`-n ${args.n}: accepted: a whole number of snapshots, 1 or more`);
    const { listSnapshots } = await import('@pacha/shared/snapshot/read');
    let list: SnapshotInfo[];
    let host: Map<string, HostChanges> | undefined;
    // -p: the package and account changes (read from each commit and its parent).
    const hist = args.packages ? await import('@pacha/shared/host/history') : undefined;
    if (args.host !== undefined && args.host !== ctx.config.hostname) {
      // Another host's history lives only on the master: fetch its repository into private
      // staging (as a rebuild would), read it, and remove the copy.
      checkHostName(args.host);
      const { openTransport } = await import('@pacha/shared/transport/open');
      const { createStagingDir, fetchHostTree, removeStagingDir } = await import('@pacha/shared/rebuild/fetch');
      const transport = await openTransport(ctx.config, ctx.log);
      const dir = createStagingDir(ctx.config.root, args.host);
      try {
        const staged = await fetchHostTree(transport, ctx.config.hostsPath, args.host, dir, ctx.log);
        list = await listSnapshots(staged.repo, args.n);
        if (hist) host = hist.hostChangesOfCommits(staged.repo, list.map((s) => s.commit));
      } finally {
        removeStagingDir(dir);
        await transport.close();
      }
    } else {
      list = await listSnapshots(ctx.state.repo, args.n);
      if (hist) host = hist.hostChangesOfCommits(ctx.state.repo, list.map((s) => s.commit));
    }
    const text = list.length === 0 ? 'no snapshots yet' : list.map((s) => [line(s), ...(host && hist ? hist.hostChangeLines(host.get(s.commit)!) : [])].join('\n')).join('\n');
    ctx.print(
      text,
      list.map((s) => ({ commit: s.commit, time: s.time.toISOString(), summary: s.summary, message: s.message.split('\n')[0], ...host?.get(s.commit) })),
    );
  },
};
