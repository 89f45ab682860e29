import fs from 'node:fs';
import path from 'node:path';
import { readJson, writeFileAtomic } from '../state.ts';

// The hook journal: every hook run of every rebuild of a host, in
// <state>/hooks/<HOST>.json. A rerun after a failure skips the hooks whose last run
// succeeded with the same content (sha256), so fixing one hook does not replay the others.

// 'step': the rebuild's built-in steps (accounts, packages; host/rebuild-steps.ts).
export type HookPhase = 'pre' | 'post' | 'step';

export interface HookRun {
  name: string;
  phase: HookPhase;
  sha256: string;
  commit: string;
  /** ISO times. */
  start: string;
  end: string;
  exitCode: number | null;
  signal: string | null;
  timedOut: boolean;
  ok: boolean;
  /** The last lines of its output (stdout and stderr interleaved). */
  outputTail: string;
}

export interface HookJournal {
  host: string;
  runs: HookRun[];
}

const KEEP_RUNS = 500;

export function journalFile(journalDir: string, host: string): string {
  return path.join(journalDir, `${host}.json`);
}

export function readJournal(journalDir: string, host: string): HookJournal {
  return readJson<HookJournal>(journalFile(journalDir, host)) ?? { host, runs: [] };
}

export function appendRun(journalDir: string, host: string, run: HookRun): void {
  fs.mkdirSync(journalDir, { recursive: true, mode: 0o700 });
  const j = readJournal(journalDir, host);
  j.runs.push(run);
  if (j.runs.length > KEEP_RUNS) j.runs = j.runs.slice(-KEEP_RUNS);
  writeFileAtomic(journalFile(journalDir, host), JSON.stringify(j, null, 2) + '\n');
}

export function lastRun(j: HookJournal, phase: HookPhase, name: string): HookRun | undefined {
  for (let i = j.runs.length - 1; i >= 0; i--) {
    const r = j.runs[i];
    if (r.phase === phase && r.name === name) return r;
  }
  return undefined;
}

export type HookStatus = 'applied' | 'failed' | 'pending';

/** applied: its last run succeeded with this content; failed: its last run with this content failed; else pending. */
export function hookStatus(j: HookJournal, phase: HookPhase, name: string, sha256: string): { status: HookStatus; last?: HookRun } {
  const last = lastRun(j, phase, name);
  if (!last || last.sha256 !== sha256) return { status: 'pending', last };
  return { status: last.ok ? 'applied' : 'failed', last };
}
