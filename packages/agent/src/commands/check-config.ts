import type { CommandModule } from 'yargs';
import fs from 'node:fs';
import path from 'node:path';
import { CONFIG_KEYS, loadConfig, type PachaConfig } from '@pacha/shared/config';
import { UsageError, errnoOf, errorMessage } from '@pacha/shared/errors';
import { hostPath } from '@pacha/shared/paths';
import { cronProblem } from '@pacha/shared/schedule';
import { escapeTerminal } from '@pacha/shared/terminal';
import { keyModeProblem } from '@pacha/shared/transport/key-mode';
import type { GlobalArgs } from '../context.ts';

// Print the effective configuration and every problem found, each marked as an error (a value
// pacha cannot use: exit 1) or a warning (the file is valid, something may be missing or
// mistyped: exit 0). Unlike other commands it reports problems instead of stopping at the first.

interface Findings {
  errors: string[];
  warnings: string[];
}

function inspect(config: PachaConfig): Findings {
  const errors: string[] = [];
  const warnings = config.warnings.map((w) => `${config.file}${w.line ? `:${w.line}` : ''}: ${w.message}`);
  if (config.host === undefined) warnings.push('pacha.host is not set: push and rebuild need the master (pacha.host = master.example.com)');
  if (config.sshKeyFile !== undefined) {
    let st: fs.Stats | undefined;
    try {
      st = fs.statSync(config.sshKeyFile);
    } catch (e) {
      errors.push(`pacha.ssh.key: ${config.sshKeyFile} ${errnoOf(e) === 'ENOENT' ? 'does not exist' : `cannot be read: ${errorMessage(e)}`}`);
    }
    const unsafe = st ? keyModeProblem(config.sshKeyFile, st.mode) : null;
    if (unsafe) errors.push(`pacha.ssh.key: ${config.sshKeyFile} ${unsafe}`);
  }
  if (config.host !== undefined && !config.host.startsWith('file://') && !fs.existsSync(config.knownHostsFile)) {
    warnings.push(`pacha.ssh.known_hosts: ${config.knownHostsFile} does not exist (record the master's key with: pacha trust-master)`);
  }
  if (config.metricsFile !== undefined) {
    const dir = path.dirname(config.metricsFile);
    try {
      fs.accessSync(dir, fs.constants.W_OK);
    } catch {
      warnings.push(`pacha.metrics.path: cannot write in ${dir} (no metrics until it exists and is writable; node_exporter's textfile folder is often /var/lib/prometheus/node-exporter)`);
    }
  }
  for (const w of config.watch) {
    if (!fs.existsSync(hostPath(w, config.root))) warnings.push(`pacha.watch: ${w} does not exist`);
  }
  return { errors, warnings };
}

export const checkConfigCommand: CommandModule<GlobalArgs, GlobalArgs> = {
  command: 'check-config',
  describe: 'print the effective configuration and its problems (exit 0: valid, maybe with warnings; 1: a value is invalid)',
  handler: (argv) => {
    let config: PachaConfig;
    try {
      config = loadConfig({ configPath: argv.config, scheduleCheck: cronProblem });
    } catch (e) {
      // A value pacha cannot use: this command's finding, not a usage error of its own.
      if (!(e instanceof UsageError)) throw e;
      if (argv.json) process.stdout.write(JSON.stringify({ valid: false, errors: [e.message], warnings: [] }, null, 2) + '\n');
      else process.stdout.write(`# the configuration is invalid:\n# error: ${escapeTerminal(e.message, { composed: true })}\n`);
      process.exitCode = 1;
      return;
    }
    const { errors, warnings } = inspect(config);
    const valid = errors.length === 0;
    if (argv.json) {
      process.stdout.write(JSON.stringify({ file: config.file, root: config.root, effective: config.effective, valid, errors, warnings }, null, 2) + '\n');
    } else {
      const lines = [`# configuration: ${config.file ?? '(no file: defaults)'}${config.root !== '/' ? `  (root dir ${config.root})` : ''}`];
      const width = Math.max(...Object.keys(CONFIG_KEYS).map((k) => k.length));
      for (const k of Object.keys(CONFIG_KEYS)) {
        const v = config.effective[k];
        lines.push(`${k.padEnd(width)} = ${escapeTerminal(v ?? '')}${v === undefined ? '   # not set' : ''}`);
      }
      if (valid && warnings.length === 0) lines.push('# valid, no problems found');
      else if (valid) lines.push(`# valid, with ${warnings.length} warning(s):`);
      else lines.push(`# invalid: ${errors.length} error(s), ${warnings.length} warning(s):`);
      for (const p of errors) lines.push(`# error: ${escapeTerminal(p)}`);
      for (const p of warnings) lines.push(`# warning: ${escapeTerminal(p)}`);
      process.stdout.write(lines.join('\n') + '\n');
    }
    if (!valid) process.exitCode = 1;
  },
};
