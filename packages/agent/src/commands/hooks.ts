import type { Argv, CommandModule } from 'yargs';
import { checkHostName } from '@pacha/shared/master-tree';
import { escapeTerminal } from '@pacha/shared/terminal';
import { createContext, type GlobalArgs } from '../context.ts';

interface HooksArgs extends GlobalArgs {
  host?: string;
}

export const hooksCommand: CommandModule<GlobalArgs, HooksArgs> = {
  command: 'hooks [host]',
  describe: "list the master's rebuild hooks of a host (default: this host) as applied / failed / pending, with their last run",
  builder: (y: Argv<GlobalArgs>) => y.positional('host', { type: 'string', describe: "the host's name on the master" }) as Argv<HooksArgs>,
  handler: async (args) => {
    // Loaded on use: keeps start-up of the other commands short.
    const { hooksReport } = await import('@pacha/shared/rebuild/hook-status');
    const { openTransport } = await import('@pacha/shared/transport/open');
    const ctx = createContext(args, { ensureState: false });
    const host = args.host ?? ctx.config.hostname;
    checkHostName(host);
    const report = await hooksReport({
      host,
      journalDir: ctx.state.hookJournalDir,
      hostsPath: ctx.config.hostsPath,
      connect: () => openTransport(ctx.config, ctx.log),
      log: ctx.log,
    });
    if (ctx.json) return ctx.print('', report);
    const lines = [`Hooks of ${host} (${report.source === 'master' ? 'on the master' : 'from the journal: master unreachable'}):`];
    if (report.hooks.length === 0) lines.push('  none');
    for (const h of report.hooks) {
      const last = h.last
        ? `last run ${h.last.end} ${h.last.ok ? 'ok' : h.last.timedOut ? 'timed out' : h.last.signal ? `killed by ${h.last.signal}` : `exit ${h.last.exitCode}`}${h.last.sha256 !== h.sha256 ? ' (older content)' : ''}`
        : 'never run here';
      // Hook names come from the master's folder: escaped for the terminal.
      lines.push(`  ${h.phase.padEnd(4)} ${escapeTerminal(h.name).padEnd(24)} ${h.status.padEnd(8)} ${last}`);
    }
    ctx.print(lines.join('\n'));
  },
};
