import v8 from 'node:v8';
import vm from 'node:vm';

/**
 * A long-lived process that mostly waits: have V8 favour a small heap over peak speed (the
 * resident memory it saves on a large tree is in docs/benchmarks.md). Set before the daemon
 * allocates much; PACHA_DAEMON_V8_DEFAULTS=1 keeps V8's defaults (to compare).
 */
export function favourSmallHeap(env: NodeJS.ProcessEnv = process.env): void {
  if (env.PACHA_DAEMON_V8_DEFAULTS !== '1') v8.setFlagsFromString('--optimize-for-size');
}

let fullGc: (() => void) | undefined;

/**
 * A full collection now. Memory the daemon lets go of when idle (docs/daemon.md) is only freed by
 * V8's next collection, which an idle process may not have for a long time. Node has no API for
 * it without --expose-gc, so the flag is set here, the first time (a context made after it sees `gc`).
 */
export function collectGarbage(): void {
  if (!fullGc) {
    v8.setFlagsFromString('--expose-gc');
    fullGc = vm.runInNewContext('gc') as () => void;
  }
  fullGc();
}
