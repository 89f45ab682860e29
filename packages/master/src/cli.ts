import type { CommandModule } from 'yargs';
import { runCli } from '@pacha/shared/cli-run';

// Each command's module is loaded when its command runs (all of them for --help): `serve`
// brings ssh2's server, the others the repository readers, and neither needs the other's.
const commands: Record<string, () => Promise<CommandModule<any, any>>> = {
  serve: async () => (await import('./commands/serve.ts')).serveCommand,
  authorize: async () => (await import('./commands/authorize.ts')).authorizeCommand,
  hosts: async () => (await import('./commands/hosts.ts')).hostsCommand,
  log: async () => (await import('./commands/log.ts')).logCommand,
  show: async () => (await import('./commands/show.ts')).showCommand,
  verify: async () => (await import('./commands/verify.ts')).verifyCommand,
};

/** Run the master CLI; resolves to the exit code (0 ok, 1 failure, 2 usage). */
export function run(argv: string[]): Promise<number> {
  return runCli({ name: 'pacha-master', usage: 'The pacha master: keeps one snapshot history per host and serves it over SFTP.', commands }, argv);
}
