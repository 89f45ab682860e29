import type { Logger } from '@pacha/shared/log';
import { takeSnapshot, type SnapshotEnv } from '@pacha/shared/snapshot/engine';
import type { ChildReply, ChildRequest } from './isolated-snapshot.ts';

// The child side of isolated-snapshot.ts: `pacha daemon` started again by the daemon with
// PACHA_INTERNAL_SNAPSHOT_CHILD=1 takes one snapshot requested over IPC, then exits. (The
// program re-runs itself rather than a separate file so that the single-file bundle works too.)
export const CHILD_ENV = 'PACHA_INTERNAL_SNAPSHOT_CHILD';

export function isSnapshotChild(env: NodeJS.ProcessEnv = process.env): boolean {
  return env[CHILD_ENV] === '1' && typeof process.send === 'function';
}

export function runSnapshotChild(): Promise<void> {
  // SIGTERM/SIGINT reach the whole process group (or systemd's cgroup) when the daemon is
  // stopped: the snapshot finishes anyway, and the daemon waits for it.
  process.on('SIGTERM', () => undefined);
  process.on('SIGINT', () => undefined);
  const post = (m: ChildReply) => new Promise<void>((r) => process.send!(m, () => r()));
  return new Promise((resolve) => {
    process.once('message', async (req: ChildRequest) => {
      const log: Logger = {
        verbose: req.verbose,
        error: (msg) => void post({ type: 'log', level: 'error', msg }),
        warn: (msg) => void post({ type: 'log', level: 'warn', msg }),
        info: (msg) => void post({ type: 'log', level: 'info', msg }),
        debug: (msg) => void post({ type: 'log', level: 'debug', msg }),
        progress: () => undefined,
      };
      const env: SnapshotEnv = { config: req.config, state: req.state, log };
      try {
        await post({ type: 'done', result: await takeSnapshot(env, req.opts) });
      } catch (e) {
        await post({ type: 'failed', message: e instanceof Error ? e.message : String(e), stack: e instanceof Error ? e.stack : undefined });
      }
      process.disconnect();
      resolve();
    });
  });
}
