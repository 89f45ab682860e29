import type { CommandModule } from 'yargs';
import { runCli } from '@pacha/shared/cli-run';
// Commands are thin: each parses its options and calls the library. Each module is loaded when
// its command runs (all of them for --help), which keeps the start-up of `pacha snapshot`,
// the command cron and scripts run most, to what it uses.
const commands: Record<string, () => Promise<CommandModule<any, any>>> = {
  watch: async () => (await import('./commands/watch.ts')).watchCommand,
  unwatch: async () => (await import('./commands/watch.ts')).unwatchCommand,
  watched: async () => (await import('./commands/watch.ts')).watchedCommand,
  snapshot: async () => (await import('./commands/snapshot.ts')).snapshotCommand,
  push: async () => (await import('./commands/push.ts')).pushCommand,
  daemon: async () => (await import('./commands/daemon.ts')).daemonCommand,
  status: async () => (await import('./commands/status.ts')).statusCommand,
  report: async () => (await import('./commands/report.ts')).reportCommand,
  log: async () => (await import('./commands/log.ts')).logCommand,
  diff: async () => (await import('./commands/diff.ts')).diffCommand,
  rebuild: async () => (await import('./commands/rebuild.ts')).rebuildCommand,
  hooks: async () => (await import('./commands/hooks.ts')).hooksCommand,
  'trust-master': async () => (await import('./commands/trust-master.ts')).trustMasterCommand,
  'check-config': async () => (await import('./commands/check-config.ts')).checkConfigCommand,
  version: async () => (await import('./commands/version.ts')).versionCommand,
};

/** Run the CLI; resolves to the exit code (0 ok, 1 failure, 2 usage). */
export function run(argv: string[]): Promise<number> {
  return runCli(
    {
      name: 'pacha',
      usage: "Snapshot this host's configuration to a pacha master, and rebuild a lost host from it.",
      commands,
      options: (y) => y.option('config', { type: 'string', describe: 'configuration file (default: /etc/pacha.conf under PACHA_ROOT_DIR; env PACHA_CONFIG)' }),
    },
    argv,
  );
}
