import type { CommandModule } from 'yargs';
import type { GlobalArgs } from '../context.ts';

export const daemonCommand: CommandModule<GlobalArgs, GlobalArgs> = {
  command: 'daemon',
  describe: 'run the agent in the foreground (for systemd): watch, snapshot, push; SIGHUP reloads, SIGTERM stops',
  handler: async (args) => {
    // Loaded on use: keeps start-up of the other commands short.
    const { runDaemon } = await import('../daemon/daemon.ts');
    await runDaemon({ configPath: args.config, verbose: args.verbose === true });
    // Everything is closed by now; do not let a stray handle (a slow callback POST) keep us up.
    setTimeout(() => process.exit(process.exitCode ?? 0), 3000).unref();
  },
};
