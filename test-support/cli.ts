import { spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

// Run the real CLIs as separate processes, as an operator would.
export const REPO_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const PACHA_BIN = path.join(REPO_DIR, 'packages/agent/bin/pacha.js');
export const MASTER_BIN = path.join(REPO_DIR, 'packages/master/bin/pacha-master.js');

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface RunOptions {
  env?: NodeJS.ProcessEnv;
  input?: string;
  cwd?: string;
  timeoutMs?: number;
}

export function runNode(script: string, args: string[], opts: RunOptions = {}): Promise<RunResult> {
  return runProgram(process.execPath, [script, ...args], opts);
}

/** Run any program (e.g. the packaged /usr/bin/pacha) the way runNode runs a script. */
export function runProgram(program: string, args: string[], opts: RunOptions = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(program, args, {
      env: { ...process.env, ...opts.env },
      cwd: opts.cwd ?? REPO_DIR,
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 60_000);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code: code ?? (signal ? 128 : 1), stdout, stderr });
    });
    if (opts.input !== undefined) child.stdin.end(opts.input);
    else child.stdin.end();
  });
}

export function runPacha(args: string[], opts: RunOptions = {}): Promise<RunResult> {
  return runNode(PACHA_BIN, args, opts);
}

export function runMaster(args: string[], opts: RunOptions = {}): Promise<RunResult> {
  return runNode(MASTER_BIN, args, opts);
}
