import { spawn } from 'node:child_process';
import os from 'node:os';
import { PachaError } from '../errors.ts';
import { withoutSecrets } from './hooks.ts';

// `pacha rebuild HOST -- CMD ARGS`: after a successful rebuild, run CMD (e.g. a container's
// entrypoint) with the terminal, and return its exit code (128+N when killed by signal N).
export function runFollowUp(cmd: string[], env: NodeJS.ProcessEnv): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd[0], cmd.slice(1), { stdio: 'inherit', env: { ...withoutSecrets(process.env), ...env } });
    child.on('error', (e) => reject(new PachaError(`cannot run the follow-up command ${cmd[0]}: ${e.message}`)));
    child.on('close', (code, signal) => {
      if (signal) resolve(128 + (os.constants.signals[signal] ?? 0));
      else resolve(code ?? 1);
    });
  });
}
