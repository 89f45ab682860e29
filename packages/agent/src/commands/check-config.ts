import type { CommandModule } from 'yargs';
import fs from 'node:fs';
import { CONFIG_KEYS, loadConfig } from '@pacha/shared/config';
import { hostPath } from '@pacha/shared/paths';
import { cronProblem } from '@pacha/shared/schedule';
import type { GlobalArgs } from '../context.ts';

// Print the effective configuration and every problem found; exit 1 when there is one.
// Unlike other commands it reports problems instead of stopping at the first warning.
export const checkConfigCommand: CommandModule<GlobalArgs, GlobalArgs> = {
  command: 'check-config',
  describe: 'print the effective configuration and its problems',
  handler: (argv) => {
    const config = loadConfig({ configPath: argv.config, scheduleCheck: cronProblem });
    const problems = config.warnings.map((w) => `${config.file}${w.line ? `:${w.line}` : ''}: ${w.message}`);
    if (config.host === undefined) problems.push('pacha.host is not set: push and rebuild need the master (pacha.host = master.example.com)');
    if (config.sshKeyFile !== undefined && !fs.existsSync(config.sshKeyFile)) problems.push(`pacha.ssh.key: ${config.sshKeyFile} does not exist`);
    if (config.host !== undefined && !config.host.startsWith('file://') && !fs.existsSync(config.knownHostsFile)) {
      problems.push(`pacha.ssh.known_hosts: ${config.knownHostsFile} does not exist (record the master's key with: pacha trust-master)`);
    }
    for (const w of config.watch) {
      if (!fs.existsSync(hostPath(w, config.root))) problems.push(`pacha.watch: ${w} does not exist`);
    }
    if (argv.json) {
      process.stdout.write(JSON.stringify({ file: config.file, root: config.root, effective: config.effective, problems }, null, 2) + '\n');
    } else {
      const lines = [`# configuration: ${config.file ?? '(no file: defaults)'}${config.root !== '/' ? `  (root dir ${config.root})` : ''}`];
      const width = Math.max(...Object.keys(CONFIG_KEYS).map((k) => k.length));
      for (const k of Object.keys(CONFIG_KEYS)) {
        const v = config.effective[k];
        lines.push(`${k.padEnd(width)} = ${v ?? ''}${v === undefined ? '   # not set' : ''}`);
      }
      lines.push(problems.length === 0 ? '# no problems found' : `# ${problems.length} problem(s):`);
      for (const p of problems) lines.push(`# - ${p}`);
      process.stdout.write(lines.join('\n') + '\n');
    }
    if (problems.length > 0) process.exitCode = 1;
  },
};
