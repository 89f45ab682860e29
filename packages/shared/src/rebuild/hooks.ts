import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { PachaError } from '../errors.ts';
import { redact, type Logger } from '../log.ts';
import { escapeTerminal } from '../terminal.ts';
import { comparePaths } from '../format/entry.ts';
import { appendRun, hookStatus, readJournal, type HookPhase, type HookRun } from './journal.ts';

// pacha_pre / pacha_post hooks: every regular file of the staged hook folder, in byte order
// of the names, made executable, run one after the other with the rebuild's environment and
// a timeout. Output is shown live, prefixed with the hook's name. The first failure (exit
// code, signal or timeout) stops the rebuild and shows the end of the hook's output.

export const DEFAULT_HOOK_TIMEOUT_SECONDS = 600;

/** Secrets of pacha's own environment, never handed to code from the master (hooks, follow-up command). */
export const SECRET_ENV = ['PACHA_SSH_PASSPHRASE'];

/** The environment without pacha's secrets. */
export function withoutSecrets(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const out = { ...env };
  for (const k of SECRET_ENV) delete out[k];
  return out;
}
const TAIL_BYTES = 4096;
const KILL_GRACE_MS = 5000;

export interface Hook {
  name: string;
  phase: HookPhase;
  /** The staged copy that runs. */
  file: string;
  sha256: string;
}

export function listHooks(dir: string, phase: HookPhase): Hook[] {
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw e;
  }
  const out: Hook[] = [];
  for (const name of names.sort(comparePaths)) {
    const file = path.join(dir, name);
    if (!fs.lstatSync(file).isFile()) continue;
    out.push({ name, phase, file, sha256: crypto.createHash('sha256').update(fs.readFileSync(file)).digest('hex') });
  }
  return out;
}

export interface HookRunOptions {
  host: string;
  commit: string;
  stagingDir: string;
  root: string;
  timeoutSeconds: number;
  journalDir: string;
  /** --rerun-hooks: run even the hooks that already succeeded with this content. */
  rerun: boolean;
  log: Logger;
  /** Extra environment (tests, and the operator's own). */
  env?: NodeJS.ProcessEnv;
}

export interface HookOutcome {
  ran: string[];
  skipped: string[];
}

export async function runHooks(hooks: Hook[], opts: HookRunOptions): Promise<HookOutcome> {
  const out: HookOutcome = { ran: [], skipped: [] };
  for (const h of hooks) {
    const journal = readJournal(opts.journalDir, opts.host);
    if (!opts.rerun && hookStatus(journal, h.phase, h.name, h.sha256).status === 'applied') {
      opts.log.info(`hook ${h.phase} ${escapeTerminal(h.name)}: already applied with this content, skipped (--rerun-hooks runs it again)`);
      out.skipped.push(h.name);
      continue;
    }
    const run = await runHook(h, opts);
    appendRun(opts.journalDir, opts.host, run);
    out.ran.push(h.name);
    if (!run.ok) {
      const why = run.timedOut
        ? `timed out after ${opts.timeoutSeconds} s`
        : run.signal
          ? `killed by ${run.signal}`
          : `exited with code ${run.exitCode}`;
      // The hook's output and name come from the master: escaped line by line for the terminal.
      const tail = run.outputTail
        .trimEnd()
        .split('\n')
        .map((l) => escapeTerminal(l))
        .join('\n');
      const name = escapeTerminal(h.name);
      throw new PachaError(`pacha_${h.phase} hook ${name} failed: ${why}${tail ? `\n--- last output of ${name} ---\n${tail}` : ' (no output)'}`, {
        hint: `fix the cause, then run the same rebuild again: hooks that succeeded are skipped (journal: ${path.join(opts.journalDir, `${opts.host}.json`)})`,
      });
    }
  }
  return out;
}

function runHook(h: Hook, opts: HookRunOptions): Promise<HookRun> {
  fs.chmodSync(h.file, 0o700);
  const start = new Date();
  const label = `[${h.phase} ${escapeTerminal(h.name)}]`;
  opts.log.info(`${label} running`);
  return new Promise((resolve) => {
    let tail = '';
    let timedOut = false;
    let spawnError: string | undefined;
    const partial: Record<string, string> = { out: '', err: '' };
    const child = spawn(h.file, [], {
      cwd: opts.stagingDir,
      env: {
        ...withoutSecrets({ ...process.env, ...opts.env }),
        PACHA_HOST: opts.host,
        PACHA_STAGING_DIR: opts.stagingDir,
        PACHA_COMMIT: opts.commit,
        PACHA_ROOT_DIR: opts.root,
        PACHA_HOOK_PHASE: h.phase,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
      // Own process group, so a timeout stops the hook and whatever it started.
      detached: true,
    });
    const onData = (key: 'out' | 'err') => (d: Buffer) => {
      const s = d.toString();
      tail = (tail + s).slice(-TAIL_BYTES);
      const lines = (partial[key] + s).split('\n');
      partial[key] = lines.pop()!;
      for (const l of lines) opts.log.info(`${label} ${escapeTerminal(l)}`);
    };
    child.stdout.on('data', onData('out'));
    child.stderr.on('data', onData('err'));
    const killGroup = (sig: NodeJS.Signals) => {
      try {
        if (child.pid) process.kill(-child.pid, sig);
      } catch {
        // already gone
      }
    };
    let killer: NodeJS.Timeout | undefined;
    // The hook has its own process group, so Ctrl-C on the terminal does not reach it: pass
    // an interruption of pacha on to it rather than leave it running alone.
    const onSignal = (sig: NodeJS.Signals) => {
      opts.log.warn(`${label} interrupted (${sig}): stopping it`);
      killGroup('SIGTERM');
      killer ??= setTimeout(() => killGroup('SIGKILL'), KILL_GRACE_MS);
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
    const timer = setTimeout(() => {
      timedOut = true;
      opts.log.warn(`${label} still running after ${opts.timeoutSeconds} s: stopping it`);
      killGroup('SIGTERM');
      killer = setTimeout(() => killGroup('SIGKILL'), KILL_GRACE_MS);
    }, opts.timeoutSeconds * 1000);
    let finished = false;
    const finish = (code: number | null, signal: NodeJS.Signals | null) => {
      if (finished) return;
      finished = true;
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
      clearTimeout(timer);
      if (killer) clearTimeout(killer);
      for (const k of ['out', 'err']) if (partial[k]) opts.log.info(`${label} ${escapeTerminal(partial[k])}`);
      if (spawnError) tail = (tail + spawnError + '\n').slice(-TAIL_BYTES);
      const ok = !timedOut && !spawnError && code === 0;
      opts.log.info(`${label} ${ok ? 'done' : 'FAILED'} (${((Date.now() - start.getTime()) / 1000).toFixed(1)} s)`);
      resolve({
        name: h.name,
        phase: h.phase,
        sha256: h.sha256,
        commit: opts.commit,
        start: start.toISOString(),
        end: new Date().toISOString(),
        exitCode: code,
        signal,
        timedOut,
        ok,
        // The journal keeps what the hook printed, never a secret it may have come across.
        outputTail: redact(tail),
      });
    };
    child.on('error', (e) => {
      spawnError = `cannot run ${h.name}: ${e.message}${(e as NodeJS.ErrnoException).code === 'ENOEXEC' ? ' (does it start with #!?)' : ''}`;
      finish(null, null);
    });
    child.on('close', (code, signal) => {
      if (!spawnError) finish(code, signal);
    });
  });
}
