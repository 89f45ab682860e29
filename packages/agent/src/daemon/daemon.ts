import type { PachaConfig } from '@pacha/shared/config';
import { errorMessage } from '@pacha/shared/errors';
import { acquireLock, type PidLock } from '@pacha/shared/lock';
import { createLogger, type Logger } from '@pacha/shared/log';
import { ensureStateDir, statePaths, type StatePaths } from '@pacha/shared/state';
import { effectiveRoots } from '@pacha/shared/watchlist';
import { watchPackageDatabase } from '@pacha/shared/host/packages';
import { postCallback } from '@pacha/shared/callback';
import type { SnapshotMemory } from '@pacha/shared/snapshot/engine';
import { PackIndexCache } from '@pacha/shared/git/pack-index';
import { PACHA_VERSION } from '@pacha/shared/version';
import { releaseFreedMemory } from '@pacha/shared/xattr/native';
import { logConfigWarnings } from '../context.ts';
import { describeMaster, plural, seconds } from '../format.ts';
import type { DaemonState } from '../status/status-files.ts';
import { DirtyBatcher } from './batcher.ts';
import { diffConfig, loadDaemonConfig } from './config-reload.ts';
import { Heartbeat } from './heartbeat.ts';
import { PushStep } from './push-step.ts';
import { ReconcileSchedule } from './reconcile-schedule.ts';
import { handleSignals } from './signals.ts';
import { snapshotStep, type SnapshotWork } from './snapshot-step.ts';
import { backoffFromEnv, StepGate, WakeTimer } from './step-scheduler.ts';
import { recordStep, type StepResult } from './steps.ts';
import { collectGarbage, favourSmallHeap } from './v8-flags.ts';
import { TreeWatcher } from './watcher.ts';

/** Idle this long after its steps, the daemon gives freed memory back (releaseMemorySoon)... */
const RELEASE_MEMORY_AFTER_MS = 2000;
/** ...and this long, the stat cache it keeps in memory too. */
const DROP_STAT_CACHE_AFTER_MS = 30_000;

// `pacha daemon`: one process, one pid lock for its whole life, one step at a time.
// This module is the lifecycle (start, reload, stop) and the step loop. Steps, in priority
// order: a full reconcile when asked for (start, schedule, reload, watcher trouble), a snapshot
// of the dirty paths once their batch is due, a push when there is something to send and no
// backoff is running. Snapshots never wait for the master.

export interface DaemonOptions {
  /** --config, taken as given. */
  configPath?: string;
  verbose?: boolean;
  env?: NodeJS.ProcessEnv;
}

export class Daemon {
  private config: PachaConfig;
  private log: Logger;
  private readonly state: StatePaths;
  private readonly opts: DaemonOptions;
  private lock: PidLock | undefined;
  private roots: string[] = [];
  private watcher: TreeWatcher | undefined;
  private packageWatch: { close(): void } | undefined;
  private readonly batcher: DirtyBatcher;
  private readonly schedule: ReconcileSchedule;
  private readonly snapshotGate: StepGate;
  /** The local repository's pack indexes, loaded once for the snapshots and the pushes. */
  private readonly packIndexes = new PackIndexCache();
  /** The last snapshot's stat cache, kept between snapshots (engine.ts). */
  private readonly snapshotMemory: SnapshotMemory = { cache: null, indexes: this.packIndexes, deflateThread: false };
  private readonly push: PushStep;
  private readonly heartbeat: Heartbeat;
  private readonly wakeTimer = new WakeTimer(() => this.wake());
  private releaseTimer: NodeJS.Timeout | undefined;
  private reconcileReason: string | undefined = 'start';
  private pushNeeded = true;
  /** Step results (and state changes) not written to the status files yet: see pump(). */
  private readonly doneSteps: StepResult[] = [];
  private holdStatus = false;
  private pumping: Promise<void> | undefined;
  private reloading: Promise<void> = Promise.resolve();
  private reloadAfterStart = false;
  private current: DaemonState = 'starting';
  private stopping = false;
  private readonly abort = new AbortController();
  private resolveStopped!: () => void;
  /** Resolves once the daemon has stopped and released its lock. */
  readonly stopped: Promise<void>;
  private removeSignalHandlers: (() => void) | undefined;

  constructor(opts: DaemonOptions = {}) {
    this.opts = opts;
    this.config = loadDaemonConfig(opts);
    this.log = this.makeLogger(this.config);
    logConfigWarnings(this.config, this.log);
    this.state = statePaths(this.config.stateDir, this.config.metricsFile);
    this.batcher = new DirtyBatcher(this.config.frequencySeconds * 1000, () => this.wake());
    this.schedule = new ReconcileSchedule(() => this.requestReconcile('schedule'));
    const backoff = backoffFromEnv(opts.env ?? process.env);
    this.snapshotGate = new StepGate(backoff);
    this.push = new PushStep({
      hostname: this.config.hostname,
      backoff,
      signal: this.abort.signal,
      indexes: this.packIndexes,
      notify: async (n) => {
        await postCallback(this.config.callbackUrl, n, this.log, { what: 'daemon' });
      },
    });
    this.heartbeat = new Heartbeat(this.state, () => this.log, () => {
      const failures = this.push.gate.failures;
      return {
        state: this.current,
        watching: this.roots,
        consecutivePushFailures: failures,
        nextPushAttempt: failures > 0 ? new Date(this.push.gate.opensAt).toISOString() : undefined,
        nextReconcile: this.schedule.nextRun()?.toISOString(),
      };
    });
    this.stopped = new Promise((r) => (this.resolveStopped = r));
  }

  private makeLogger(config: PachaConfig): Logger {
    return createLogger({ verbose: this.opts.verbose === true, file: config.logFile });
  }

  // ---- starting ----

  async start(): Promise<void> {
    ensureStateDir(this.config.stateDir);
    this.lock = acquireLock(this.state.lock, 'daemon', this.log);
    try {
      await this.startLocked();
    } catch (e) {
      // Do not leave a lock or open watches behind a daemon that could not start.
      await this.stopWatcher().catch(() => undefined);
      this.removeSignalHandlers?.();
      this.lock?.release();
      this.lock = undefined;
      throw e;
    }
  }

  private async startLocked(): Promise<void> {
    this.removeSignalHandlers = handleSignals({ stop: (sig) => void this.stop(sig), reload: () => this.requestReload() });
    const c = this.config;
    this.log.info(
      `pacha ${PACHA_VERSION} daemon started (pid ${process.pid}, host ${c.hostname}, master ${describeMaster(c)}, ` +
        `frequency ${c.frequencySeconds}s, reconcile "${c.schedule}")`,
    );
    if (c.host === undefined) this.log.warn('pacha.host is not set: snapshots are kept locally and not pushed');
    this.heartbeat.beat();
    await this.startWatcher();
    if (this.stopping) return;
    this.schedule.arm(c.schedule);
    this.heartbeat.start();
    this.wake();
    if (this.reloadAfterStart) this.requestReload();
  }

  // ---- watching ----

  private async startWatcher(): Promise<void> {
    this.roots = effectiveRoots(this.config, this.state);
    if (this.roots.length === 0) {
      this.log.warn('nothing to watch: add paths with `pacha watch PATH` (or pacha.watch in the config), then reload (SIGHUP)');
      return;
    }
    const t0 = Date.now();
    const watcher = new TreeWatcher({
      root: this.config.root,
      roots: this.roots,
      ignore: this.config.ignore,
      onDirty: (p) => {
        this.log.debug(`changed: ${p}`);
        this.batcher.mark(p);
      },
      onTrouble: (reason) => this.requestReconcile(reason),
    });
    this.watcher = watcher;
    await watcher.start();
    // A package installed or removed is a change too, though no watched file may change with it.
    this.packageWatch = watchPackageDatabase(
      this.config.root,
      (file) => {
        this.log.debug(`package database changed: ${file}`);
        this.batcher.mark(file);
      },
      this.log,
    );
    this.log.info(
      `watching ${plural(this.roots.length, 'path')} (${watcher.watchedDirectories()} directories, ready in ${Date.now() - t0} ms): ${this.roots.join(', ')}`,
    );
    this.heartbeat.beat();
  }

  private async stopWatcher(): Promise<void> {
    const w = this.watcher;
    this.watcher = undefined;
    this.packageWatch?.close();
    this.packageWatch = undefined;
    if (w) await w.close();
  }

  requestReconcile(reason: string): void {
    if (this.stopping) return;
    // Said once per pending reconcile: a watcher in trouble can report the same error many times.
    if (reason !== 'schedule' && reason !== 'start' && reason !== 'reload' && this.reconcileReason === undefined) {
      this.log.warn(`${reason}: a full reconcile scan follows`);
    }
    this.reconcileReason ??= reason;
    this.wake();
  }

  // ---- the step loop ----

  private wake(): void {
    // Before start-up completes the loop waits: the start reconcile runs once the watcher is ready.
    if (this.stopping || !this.heartbeat.running || this.pumping) return;
    this.pumping = this.pump().finally(() => {
      this.pumping = undefined;
      if (this.stopping) return;
      if (this.nextStep() !== undefined) this.wake();
      else this.armWakeTimer();
    });
  }

  /** The step that may run now, if any. */
  private nextStep(now = Date.now()): 'reconcile' | 'snapshot' | 'push' | undefined {
    if (this.snapshotGate.isOpen(now)) {
      if (this.reconcileReason !== undefined && this.roots.length > 0) return 'reconcile';
      if (this.batcher.isDue) return 'snapshot';
    }
    if (this.pushNeeded && this.config.host !== undefined && this.push.gate.isOpen(now)) return 'push';
    return undefined;
  }

  private async pump(): Promise<void> {
    while (!this.stopping) {
      // A reconcile asked for while nothing is watched is moot.
      if (this.roots.length === 0) this.reconcileReason = undefined;
      const step = this.nextStep();
      if (step === 'reconcile') {
        const reason = this.reconcileReason;
        this.reconcileReason = undefined;
        // The full scan covers everything marked so far; later events start a new batch.
        this.batcher.clear();
        await this.snapshot({ paths: undefined, firstChangeAt: Date.now(), reason });
      } else if (step === 'snapshot') {
        const batch = this.batcher.take();
        // The status files of a snapshot of changed paths are written once the push that
        // follows it is done: they are off the way of the change to the master.
        this.holdStatus = true;
        if (batch) await this.snapshot({ ...batch, reason: batch.paths === undefined ? 'too many changes' : undefined });
        if (this.nextStep() !== 'push') this.writeStatus();
      } else if (step === 'push') {
        this.setState('push');
        const r = await this.push.run({ config: this.config, state: this.state, log: this.log });
        if (r?.ok) this.pushNeeded = false;
        if (r) this.stepDone(r);
        this.writeStatus();
      } else break;
    }
    this.writeStatus();
    if (!this.stopping) {
      this.setState('idle');
      this.releaseMemorySoon();
    }
  }

  /**
   * Once the daemon has been idle a moment, give back what malloc kept of the memory its work
   * freed (a full snapshot's peak is twice the idle size), off the way of an edit's snapshot and
   * push. Idle longer, it also lets go of the stat cache it keeps in memory: the next snapshot
   * reads it from its file (docs/daemon.md has what each costs).
   */
  private releaseMemorySoon(): void {
    clearTimeout(this.releaseTimer);
    const later = (ms: number, then: () => void) => {
      this.releaseTimer = setTimeout(() => {
        if (this.current === 'idle') then();
      }, ms);
      this.releaseTimer.unref();
    };
    const release = () => {
      collectGarbage();
      releaseFreedMemory();
    };
    later(RELEASE_MEMORY_AFTER_MS, () => {
      release();
      later(DROP_STAT_CACHE_AFTER_MS - RELEASE_MEMORY_AFTER_MS, () => {
        this.snapshotMemory.cache = null;
        release();
      });
    });
  }

  private armWakeTimer(): void {
    const times: number[] = [];
    if (this.pushNeeded && this.config.host !== undefined) times.push(this.push.gate.opensAt);
    if (this.reconcileReason !== undefined || this.batcher.isDue) times.push(this.snapshotGate.opensAt);
    this.wakeTimer.arm(times);
  }

  private async snapshot(work: SnapshotWork): Promise<void> {
    const full = work.paths === undefined;
    this.setState(full ? 'reconcile' : 'snapshot');
    const t0 = Date.now();
    try {
      const result = await snapshotStep({ config: this.config, state: this.state, log: this.log, memory: this.snapshotMemory }, work);
      this.snapshotGate.succeeded();
      if (result.commit) this.pushNeeded = true;
      this.stepDone({ step: 'snapshot', full, ms: Date.now() - t0, ok: true, result });
    } catch (e) {
      const msg = errorMessage(e);
      const delay = this.snapshotGate.failed();
      this.log.error(`snapshot failed: ${msg} (retry in ${seconds(delay)})`);
      this.log.debug((e as Error)?.stack ?? '');
      // Nothing is dropped: the same paths (or the full scan) are tried again.
      if (full) this.reconcileReason ??= work.reason ?? 'retry';
      else for (const p of work.paths!) this.batcher.mark(p);
      this.stepDone({ step: 'snapshot', full, ms: Date.now() - t0, ok: false, error: msg });
    }
  }

  /** A step finished: the one place its result goes (the status files, and what they feed). */
  private stepDone(r: StepResult): void {
    this.doneSteps.push(r);
    if (!this.holdStatus) this.writeStatus();
  }

  /** Write the results of the steps done and the heartbeat; from now on as they come. */
  private writeStatus(): void {
    const held = this.holdStatus || this.doneSteps.length > 0;
    this.holdStatus = false;
    if (!held) return;
    for (const r of this.doneSteps.splice(0)) {
      try {
        recordStep(this.state, r);
      } catch (e) {
        this.log.debug(`cannot write ${this.state.status}: ${errorMessage(e)}`);
      }
    }
    this.heartbeat.beat();
  }

  private setState(s: DaemonState): void {
    if (this.current === s) return;
    this.current = s;
    if (!this.holdStatus) this.heartbeat.beat();
  }

  // ---- reload ----

  requestReload(): void {
    if (this.stopping) return;
    if (!this.heartbeat.running) {
      // Still starting (the watcher may be scanning a big tree): reload once started.
      this.reloadAfterStart = true;
      return;
    }
    this.reloading = this.reloading.then(() => this.reload()).catch((e) => this.log.error(`reload failed: ${errorMessage(e)}`));
  }

  private async reload(): Promise<void> {
    if (this.stopping) return;
    let next: PachaConfig;
    try {
      next = loadDaemonConfig(this.opts);
    } catch (e) {
      this.log.error(`reload: configuration not changed, it has an error: ${errorMessage(e)}`);
      return;
    }
    const prev = this.config;
    const changes = diffConfig(prev, next, this.roots, effectiveRoots(next, this.state));
    if (changes.logFile) this.log = this.makeLogger(next);
    this.config = next;
    logConfigWarnings(next, this.log);
    this.log.info(`reload: ${changes.lines.length > 0 ? changes.lines.join('; ') : 'nothing changed'}`);
    this.batcher.setDelay(next.frequencySeconds * 1000);
    if (changes.schedule) this.schedule.arm(next.schedule);
    if (changes.rewatch || this.watcher === undefined) {
      await this.stopWatcher();
      if (this.stopping) return;
      await this.startWatcher();
      this.requestReconcile('reload');
    }
    if (changes.master) {
      await this.push.masterChanged();
      this.pushNeeded = true;
    }
    this.heartbeat.beat();
    this.wake();
  }

  // ---- stopping ----

  async stop(signal: string): Promise<void> {
    if (this.stopping) {
      this.log.warn(`${signal} again: exiting now`);
      this.lock?.release();
      process.exit(1);
    }
    this.stopping = true;
    this.log.info(`stopping (${signal})${this.current !== 'idle' ? `: letting the current ${this.current} finish` : ''}`);
    this.current = 'stopping';
    this.heartbeat.beat();
    this.abort.abort();
    this.schedule.stop();
    this.wakeTimer.clear();
    clearTimeout(this.releaseTimer);
    this.heartbeat.stop();
    this.batcher.clear();
    await this.stopWatcher().catch(() => undefined);
    await this.pumping?.catch(() => undefined);
    await this.reloading.catch(() => undefined);
    await this.push.close();
    this.current = 'stopped';
    this.heartbeat.beat();
    this.lock?.release();
    this.lock = undefined;
    // From here a late signal finds no handler and ends the process the default way.
    this.removeSignalHandlers?.();
    this.log.info('stopped');
    this.resolveStopped();
  }
}

/** Run the daemon until SIGTERM/SIGINT. Throws (before starting) when another pacha holds the lock. */
export async function runDaemon(opts: DaemonOptions = {}): Promise<void> {
  favourSmallHeap();
  const d = new Daemon(opts);
  const started = d.start();
  // A SIGTERM during start-up (e.g. while the watcher scans a big tree) ends the daemon
  // without waiting for the start to complete.
  started.catch(() => undefined);
  await Promise.race([started, d.stopped]);
  await d.stopped;
}
