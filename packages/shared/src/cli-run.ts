import type { Argv, CommandModule } from 'yargs';
import { PachaError, errorMessage } from './errors.ts';
import { levelLines, redact, stderrIsJournal } from './log.ts';
import { escapeTerminal } from './terminal.ts';

// The one CLI frame of `pacha` and `pacha-master`: yargs with strict parsing, errors turned
// into messages and exit codes (0 ok, 1 failure, 2 usage). Commands stay thin.
export interface CliSpec {
  name: string;
  usage: string;
  /** The commands, or a function that loads them (so that start-up loads only what runs). */
  commands: CommandModule<any, any>[] | (() => Promise<CommandModule<any, any>[]>);
  /** Extra global options (e.g. --config). */
  options?: (y: Argv<any>) => Argv<any>;
  /** Commands that may run without yargs, by name (see quickArgs). */
  quick?: Record<string, QuickCommand>;
  /** The extra global options that take a string, for the quick path: long name -> alias ('' none). */
  quickGlobals?: Record<string, string>;
}

/** A command the quick path runs: its yargs module (whose handler runs) and its string options. */
export interface QuickCommand {
  load: () => Promise<CommandModule<any, any>>;
  /** Long name -> one-letter alias ('' for none). */
  strings?: Record<string, string>;
}

/**
 * The arguments of a command line simple enough to need no yargs, else null. Loading yargs
 * costs some 60 ms of start-up (its width tables), which the commands that cron, systemd and
 * scripts run all day (`pacha snapshot`) need not pay. Only `--json`, `-v`/`--verbose` and the
 * declared string options (`--name VALUE`, `--name=VALUE`, `-a VALUE`) are taken, each at most
 * once; anything else (help, a typo, a positional) goes to yargs, which explains it.
 */
export function quickArgs(spec: CliSpec, argv: string[]): { command: QuickCommand; args: Record<string, unknown> } | null {
  const command = spec.quick?.[argv[0]];
  if (command === undefined) return null;
  const strings: Record<string, string> = { ...spec.quickGlobals, ...command.strings };
  const byAlias = new Map(Object.entries(strings).filter(([, a]) => a !== '').map(([name, a]) => [`-${a}`, name]));
  const args: Record<string, unknown> = { _: [argv[0]], $0: spec.name };
  for (let i = 1; i < argv.length; i++) {
    const a = argv[i];
    let name: string | undefined;
    let value: string | undefined;
    if (a === '--json') name = 'json';
    else if (a === '--verbose' || a === '-v') name = 'verbose';
    else if (byAlias.has(a)) name = byAlias.get(a);
    else if (a.startsWith('--')) {
      const eq = a.indexOf('=');
      name = a.slice(2, eq < 0 ? undefined : eq);
      if (!(name in strings)) return null;
      if (eq >= 0) value = a.slice(eq + 1);
    } else return null;
    if (name === undefined || name in args) return null;
    if (name === 'json' || name === 'verbose') {
      args[name] = true;
      continue;
    }
    if (value === undefined) {
      value = argv[++i];
      if (value === undefined || value.startsWith('-')) return null;
    }
    args[name] = value;
  }
  return { command, args };
}

/** yargs refused the command line (unknown option, missing command, bad value). */
class CommandLineError extends Error {}

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
  const quick = quickArgs(spec, argv);
  if (quick !== null) {
    try {
      await (await quick.command.load()).handler(quick.args as never);
      return exitCodeSet();
    } catch (err) {
      return reportError(err);
    }
  }
  const yargs = (await import('yargs')).default;
  let parser: Argv<any> = yargs(argv)
    .scriptName(spec.name)
    .usage(`$0 <command> [options]\n\n${spec.usage}`)
    .option('verbose', { alias: 'v', type: 'boolean', describe: 'more detail' })
    .option('json', { type: 'boolean', describe: 'machine-readable output' });
  if (spec.options) parser = spec.options(parser);
  parser = parser
    .command(typeof spec.commands === 'function' ? await spec.commands() : spec.commands)
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
