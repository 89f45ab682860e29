import type { CommandModule } from 'yargs';
import { runCli } from '@pacha/shared/cli-run';
// Commands are thin: each parses its options and calls the library. They are loaded when the
// CLI runs through yargs; the quick path loads only the command it runs.
async function commands(): Promise<CommandModule<any, any>[]> {
  const [watch, snapshot, diff, log, push, daemon, status, report, rebuild, hooks, trust, check, version] = await Promise.all([
    import('./commands/watch.ts'),
    import('./commands/snapshot.ts'),
    import('./commands/diff.ts'),
    import('./commands/log.ts'),
    import('./commands/push.ts'),
    import('./commands/daemon.ts'),
    import('./commands/status.ts'),
    import('./commands/report.ts'),
    import('./commands/rebuild.ts'),
    import('./commands/hooks.ts'),
    import('./commands/trust-master.ts'),
    import('./commands/check-config.ts'),
    import('./commands/version.ts'),
  ]);
  return [
    watch.watchCommand, watch.unwatchCommand, watch.watchedCommand,
    snapshot.snapshotCommand, push.pushCommand, daemon.daemonCommand,
    status.statusCommand, report.reportCommand, log.logCommand, diff.diffCommand,
    rebuild.rebuildCommand, hooks.hooksCommand, trust.trustMasterCommand,
    check.checkConfigCommand, version.versionCommand,
  ];
}

/** Run the CLI; resolves to the exit code (0 ok, 1 failure, 2 usage). */
export function run(argv: string[]): Promise<number> {
  return runCli(
    {
      name: 'pacha',
      usage: "Snapshot this host's configuration to a pacha master, and rebuild a lost host from it.",
      commands,
      options: (y) => y.option('config', { type: 'string', describe: 'configuration file (default: /etc/pacha.conf under PACHA_ROOT_DIR; env PACHA_CONFIG)' }),
      // What cron and scripts run most often starts without loading yargs.
      quick: { snapshot: { load: async () => (await import('./commands/snapshot.ts')).snapshotCommand, strings: { message: 'm' } } },
      quickGlobals: { config: '' },
    },
    argv,
  );
}
