import v8 from 'node:v8';

/**
 * A long-lived process that mostly waits: have V8 favour a small heap over peak speed (the
 * resident memory it saves on a large tree is in docs/benchmarks.md). Set before the daemon
 * allocates much; PACHA_DAEMON_V8_DEFAULTS=1 keeps V8's defaults (to compare).
 */
export function favourSmallHeap(env: NodeJS.ProcessEnv = process.env): void {
  if (env.PACHA_DAEMON_V8_DEFAULTS !== '1') v8.setFlagsFromString('--optimize-for-size');
}
