import { loadConfig, type PachaConfig } from '@pacha/shared/config';
import { createLogger, type Logger } from '@pacha/shared/log';
import { ensureStateDir, statePaths, type StatePaths } from '@pacha/shared/state';

// What every command gets: the configuration, a logger, the state paths and output mode.
export interface GlobalArgs {
  config?: string;
  verbose?: boolean;
  json?: boolean;
}

export interface AgentContext {
  config: PachaConfig;
  log: Logger;
  state: StatePaths;
  json: boolean;
  /** Print the result of a command: JSON for scripts with --json, text otherwise. */
  print(text: string, json?: unknown): void;
}

export function createContext(args: GlobalArgs, opts: { ensureState?: boolean } = {}): AgentContext {
  const config = loadConfig({ configPath: args.config });
  const json = args.json === true;
  const log = createLogger({ verbose: args.verbose === true, file: config.logFile });
  logConfigWarnings(config, log);
  const state = statePaths(config.stateDir, config.metricsFile);
  if (opts.ensureState !== false) ensureStateDir(config.stateDir);
  return {
    config,
    log,
    state,
    json,
    print(text: string, value?: unknown) {
      if (json) process.stdout.write(JSON.stringify(value ?? { message: text }, null, 2) + '\n');
      else if (text.length > 0) process.stdout.write(text.endsWith('\n') ? text : text + '\n');
    },
  };
}

/** The configuration's warnings (unknown keys and the like), each naming the file and line. */
export function logConfigWarnings(config: PachaConfig, log: Logger): void {
  for (const w of config.warnings) log.warn(`${config.file ?? 'config'}${w.line ? `:${w.line}` : ''}: ${w.message}`);
}
