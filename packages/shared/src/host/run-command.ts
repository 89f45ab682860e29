import { spawn } from 'node:child_process';
import type { Logger } from '../log.ts';

// The rebuild's built-in steps run the host's own tools (groupadd, useradd, apt-get): output
// shown live with a label, as hooks' output is, and the end of it kept for the journal.

const TAIL_BYTES = 4096;

export interface CommandResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** The last output (stdout and stderr interleaved). */
  tail: string;
  /** Why it could not start (ENOENT...). */
  error?: string;
}

export function runLogged(cmd: string, args: string[], opts: { label: string; log: Logger; env?: NodeJS.ProcessEnv; quiet?: boolean; timeoutMs?: number }): Promise<CommandResult> {
  return new Promise((resolve) => {
    let tail = '';
    const partial: Record<'out' | 'err', string> = { out: '', err: '' };
    const child = spawn(cmd, args, { env: { ...process.env, ...opts.env }, stdio: ['ignore', 'pipe', 'pipe'] });
    const show = (l: string) => (opts.quiet ? opts.log.debug(`${opts.label} ${l}`) : opts.log.info(`${opts.label} ${l}`));
    const onData = (key: 'out' | 'err') => (d: Buffer) => {
      const s = d.toString();
      tail = (tail + s).slice(-TAIL_BYTES);
      const lines = (partial[key] + s).split('\n');
      partial[key] = lines.pop()!;
      for (const l of lines) show(l);
    };
    child.stdout.on('data', onData('out'));
    child.stderr.on('data', onData('err'));
    const timer = opts.timeoutMs ? setTimeout(() => child.kill('SIGTERM'), opts.timeoutMs) : undefined;
    let error: string | undefined;
    child.on('error', (e) => {
      error = `cannot run ${cmd}: ${e.message}`;
    });
    child.on('close', (code, signal) => {
      if (timer) clearTimeout(timer);
      for (const k of ['out', 'err'] as const) if (partial[k]) show(partial[k]);
      resolve({ code: error ? null : code, signal, tail: error ? (tail + error + '\n').slice(-TAIL_BYTES) : tail, error });
    });
  });
}

/** "exited with code 1" / "killed by SIGTERM" / the spawn error. */
export function describeFailure(r: CommandResult): string {
  if (r.error) return r.error;
  if (r.signal) return `killed by ${r.signal}`;
  return `exited with code ${r.code}`;
}
