import { Worker } from 'node:worker_threads';
import { workerFile } from '@pacha/shared/worker-file';

// The master's worker threads (pack-check.ts, pack-stream.ts) are started on the first large pack
// and kept for the next one, so their start-up (loading the pack reader) is paid once; a master
// with no push going on holds none.

/** Threads idle this long are ended. */
export const IDLE_MS = 30_000;

/** The threads of one worker module: taken for a task, given back after it, ended when idle. */
export class ThreadCache {
  private readonly file: URL;
  private readonly idle: Worker[] = [];
  private timer: NodeJS.Timeout | undefined;
  /** Threads started and not exited, idle or taken. */
  alive = 0;

  /** `name`: the worker module beside the module at `callerUrl` (its import.meta.url). */
  constructor(callerUrl: string, name: string) {
    this.file = workerFile(callerUrl, name);
  }

  get idleCount(): number {
    return this.idle.length;
  }

  /** An idle thread, or a new one. The taker listens for its 'error' and 'exit' while it uses it. */
  take(): Worker {
    clearTimeout(this.timer);
    return this.idle.pop() ?? this.spawn();
  }

  /** A thread whose task ended with the thread still sound. */
  giveBack(w: Worker): void {
    this.idle.push(w);
    clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      for (const x of this.idle.splice(0)) void x.terminate();
    }, IDLE_MS);
    this.timer.unref();
  }

  /** Start threads until `n` are alive, idle until taken. */
  warm(n: number): void {
    while (this.alive < n) this.giveBack(this.spawn());
  }

  private spawn(): Worker {
    const w = new Worker(this.file);
    // Never what keeps the master running. An 'error' with no listener would end the master: a
    // failed thread only fails the task it served, which its taker hears about.
    w.unref();
    w.on('error', () => {});
    this.alive++;
    w.on('exit', () => {
      this.alive--;
      const i = this.idle.indexOf(w);
      if (i >= 0) this.idle.splice(i, 1);
    });
    return w;
  }
}
