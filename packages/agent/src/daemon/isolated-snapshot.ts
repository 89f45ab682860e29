import { fork } from 'node:child_process';
import type { PachaConfig } from '@pacha/shared/config';
import type { SnapshotEnv, SnapshotOptions, SnapshotResult } from '@pacha/shared/snapshot/engine';
import type { StatePaths } from '@pacha/shared/state';
import { CHILD_ENV } from './snapshot-child.ts';

// A full scan of a big tree needs a lot of memory for a short time (a first snapshot of
// 100,000 files peaks near 440 MiB, bench/snapshot.ts (a')). Run inside the daemon, that memory would stay with the
// daemon for its whole life: neither V8 nor malloc hand a grown heap back (a worker thread
// does not help, measured). In a child process that exits after the snapshot it is returned to
// the system. The daemon holds the pid lock for the child (takeSnapshot takes no lock).

export interface ChildRequest {
  config: PachaConfig;
  state: StatePaths;
  opts: SnapshotOptions;
  verbose: boolean;
}

export type ChildReply =
  | { type: 'log'; level: 'error' | 'warn' | 'info' | 'debug'; msg: string }
  | { type: 'done'; result: SnapshotResult }
  | { type: 'failed'; message: string; stack?: string };

export function takeSnapshotIsolated(env: SnapshotEnv, opts: SnapshotOptions): Promise<SnapshotResult> {
  const request: ChildRequest = { config: env.config, state: env.state, opts, verbose: env.log.verbose };
  return new Promise((resolve, reject) => {
    // The same program (bin/pacha.js in a checkout, pacha.mjs when bundled) in child mode.
    const child = fork(process.argv[1], ['daemon'], {
      env: { ...process.env, [CHILD_ENV]: '1' },
      serialization: 'advanced',
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      execArgv: process.execArgv.filter((a) => !a.startsWith('--inspect')),
    });
    let result: SnapshotResult | undefined;
    let failure: Error | undefined;
    child.on('message', (m: ChildReply) => {
      if (m.type === 'log') env.log[m.level](m.msg);
      else if (m.type === 'done') result = m.result;
      else {
        failure = new Error(m.message);
        if (m.stack) failure.stack = m.stack;
      }
    });
    child.on('error', (e) => (failure ??= e));
    child.on('exit', (code, signal) => {
      if (result) resolve(result);
      else reject(failure ?? new Error(`the snapshot process stopped (${signal ?? `exit code ${code}`}) before finishing`));
    });
    child.send(request);
  });
}
