import yargs, { type Argv, type CommandModule } from 'yargs';
import { PachaError, errorMessage } from './errors.ts';
import { redact } from './log.ts';

// The one CLI frame of `pacha` and `pacha-master`: yargs with strict parsing, errors turned
// into messages and exit codes (0 ok, 1 failure, 2 usage). Commands stay thin.
export interface CliSpec {
  name: string;
  usage: string;
  commands: CommandModule<any, any>[];
  /** Extra global options (e.g. --config). */
  options?: (y: Argv<any>) => Argv<any>;
}

export async function runCli(spec: CliSpec, argv: string[]): Promise<number> {
  let usageFailed = false;
  let parser: Argv<any> = yargs(argv)
    .scriptName(spec.name)
    .usage(`$0 <command> [options]\n\n${spec.usage}`)
    .option('verbose', { alias: 'v', type: 'boolean', describe: 'more detail' })
    .option('json', { type: 'boolean', describe: 'machine-readable output' });
  if (spec.options) parser = spec.options(parser);
  parser = parser
    .command(spec.commands)
    .demandCommand(1, `name a command (${spec.name} --help lists them)`)
    .strict()
    .help()
    .alias('help', 'h')
    .version(false)
    .wrap(Math.min(110, process.stdout.columns ?? 100))
    .fail((msg, err) => {
      if (err) throw err;
      usageFailed = true;
      process.stderr.write(`error: ${msg}\n(${spec.name} --help shows the usage)\n`);
    })
    .exitProcess(false);
  try {
    await parser.parseAsync();
    if (usageFailed) return 2;
    return typeof process.exitCode === 'number' ? process.exitCode : 0;
  } catch (err) {
    if (err instanceof PachaError) {
      process.stderr.write(`error: ${redact(err.message)}\n`);
      if (err.hint) process.stderr.write(`hint: ${err.hint}\n`);
      return err.exitCode;
    }
    process.stderr.write(`error: ${redact(errorMessage(err))}\n`);
    if (process.env.PACHA_DEBUG) process.stderr.write(`${(err as Error).stack}\n`);
    return 1;
  }
}
