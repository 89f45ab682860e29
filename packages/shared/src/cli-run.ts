import type { Argv, CommandModule } from 'yargs';
import { PachaError, UsageError, errorMessage } from './errors.ts';
import { levelLines, redact, stderrIsJournal } from './log.ts';
import { escapeTerminal } from './terminal.ts';

// The one CLI frame of `pacha` and `pacha-master`: yargs with strict parsing, errors turned
// into messages and exit codes (0 ok, 1 failure, 2 usage). Commands stay thin.
export interface CliSpec {
  name: string;
  usage: string;
  /**
   * The commands: modules, or loaders by command name so that a command line loads only the
   * module of the command it names (the others are loaded for help or an unknown name).
   */
  commands: CommandModule<any, any>[] | Record<string, () => Promise<CommandModule<any, any>>>;
  /** Extra global options (e.g. --config). */
  options?: (y: Argv<any>) => Argv<any>;
}

/** The command modules a command line needs: the one it names when it names one, else all. */
async function commandsFor(spec: CliSpec, argv: string[]): Promise<CommandModule<any, any>[]> {
  if (Array.isArray(spec.commands)) return spec.commands;
  const loaders = spec.commands;
  const named = argv[0] !== undefined && Object.hasOwn(loaders, argv[0]) ? [loaders[argv[0]]] : Object.values(loaders);
  return Promise.all(named.map((load) => load()));
}

/** yargs refused the command line (unknown option, missing command, bad value). */
class CommandLineError extends UsageError {}

/** An error as the user sees it, and its exit code. */
function reportError(err: unknown): number {
  const shown = (s: string) => escapeTerminal(redact(s), { composed: true });
  const journal = stderrIsJournal();
  const write = (text: string) => process.stderr.write(levelLines('error', text, journal));
  if (err instanceof PachaError) {
    write(`error: ${shown(err.message)}\n`);
    if (err.hint) write(`hint: ${shown(err.hint)}\n`);
    return err.exitCode;
  }
  write(`error: ${shown(errorMessage(err))}\n`);
  if (process.env.PACHA_DEBUG) process.stderr.write(`${(err as Error).stack}\n`);
  return 1;
}

function exitCodeSet(): number {
  return typeof process.exitCode === 'number' ? process.exitCode : 0;
}

export async function runCli(spec: CliSpec, argv: string[]): Promise<number> {
  const [yargs, commands] = await Promise.all([import('yargs').then((m) => m.default), commandsFor(spec, argv)]);
  let parser: Argv<any> = yargs(argv)
    .scriptName(spec.name)
    .usage(`$0 <command> [options]\n\n${spec.usage}`)
    .option('verbose', { alias: 'v', type: 'boolean', describe: 'more detail' })
    .option('json', { type: 'boolean', describe: 'machine-readable output' });
  if (spec.options) parser = spec.options(parser);
  parser = parser
    .command(commands)
    .demandCommand(1, `name a command (${spec.name} --help lists them)`)
    .strict()
    .help()
    .alias('help', 'h')
    .version(false)
    .wrap(Math.min(110, process.stdout.columns ?? 100))
    // Throwing stops yargs: a command line it refuses must not run its command's handler.
    .fail((msg, err) => {
      throw err ?? new CommandLineError(msg);
    })
    .exitProcess(false);
  try {
    await parser.parseAsync();
    return exitCodeSet();
  } catch (err) {
    if (err instanceof CommandLineError) {
      process.stderr.write(`error: ${err.message}\n(${spec.name} --help shows the usage)\n`);
      return 2;
    }
    return reportError(err);
  }
}
