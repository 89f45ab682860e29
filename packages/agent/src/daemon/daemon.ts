import v8 from 'node:v8';
import { loadConfig, type PachaConfig } from '@pacha/shared/config';
import { cronProblem } from '@pacha/shared/schedule';
import { errorMessage } from '@pacha/shared/errors';
import { acquireLock, type PidLock } from '@pacha/shared/lock';
import { createLogger, type Logger } from '@pacha/shared/log';
import { ensureStateDir, statePaths, type StatePaths } from '@pacha/shared/state';
import { effectiveRoots } from '@pacha/shared/watchlist';
import { takeSnapshot, type SnapshotResult } from '@pacha/shared/snapshot/engine';
import { pushSnapshots, type PushResult } from '@pacha/shared/push/push';
import { PACHA_VERSION } from '@pacha/shared/version';
import { Backoff, backoffFromEnv } from './backoff.ts';
import { DirtyBatcher, type Batch } from './batcher.ts';
import { PushHealth } from './callback-notify.ts';
import { postCallback } from '@pacha/shared/callback';
import { MasterConnection } from './connection.ts';
import { takeSnapshotIsolated } from './isolated-snapshot.ts';
import { ReconcileSchedule } from './scheduler.ts';
import { TreeWatcher } from './watcher.ts';
import { HEARTBEAT_MS } from './heartbeat.ts';
import { bytes, describeMaster, seconds } from '../format.ts';
import { recordError, recordHeartbeat, recordPush, recordPushFailure, recordSnapshot, type DaemonState } from '../status/status-files.ts';

// `pacha daemon`: one process, one pid lock for its whole life, one step at a time.
// Steps, in priority order: a full reconcile when asked for (start, schedule, reload, watcher
// trouble), a snapshot of the dirty paths once their batch is due, a push when there is
// something to send and no backoff is running. Snapshots never wait for the master.

export interface DaemonOptions {
  /** --config, taken as given. */
  configPath?: string;
  verbose?: boolean;
  env?: NodeJS.ProcessEnv;
}

function masterChanged(a: PachaConfig, b: PachaConfig): boolean {
  return (
    a.host !== b.host || a.hostsPath !== b.hostsPath || a.sshPort !== b.sshPort || a.sshUser !== b.sshUser ||
    a.sshKeyFile !== b.sshKeyFile || a.knownHostsFile !== b.knownHostsFile || a.hostname !== b.hostname
  );
}

/** The daemon logs one line per push itself: the library's own summary lines become detail (-v). */
function quieter(log: Logger): Logger {
  return { ...log, verbose: log.verbose, info: (m) => log.debug(m) };
}

export class Daemon {
  private config: PachaConfig;
  private log: Logger;
  private readonly state: StatePaths;
  private readonly opts: DaemonOptions;
  private lock: PidLock | undefined;
  private roots: string[] = [];
  private watcher: TreeWatcher | undefined;
  private readonly batcher: DirtyBatcher;
  private readonly schedule: ReconcileSchedule;
  private readonly pushBackoff: Backoff;
  private readonly snapshotBackoff: Backoff;
  private readonly health: PushHealth;
  private readonly connection = new MasterConnection();
  private reconcileReason: string | undefined = 'start';
  private pushNeeded = true;
  private pushNotBefore = 0;
  private snapshotNotBefore = 0;
  private wakeTimer: NodeJS.Timeout | undefined;
  private heartbeatTimer: NodeJS.Timeout | undefined;
  private pumping: Promise<void> | undefined;
  private reloading: Promise<void> = Promise.resolve();
  private reloadAfterStart = false;
  private current: DaemonState = 'starting';
  private stopping = false;
  private readonly abort = new AbortController();
  private readonly startedAt = new Date();
  private resolveStopped!: () => void;
  /** Resolves once the daemon has stopped and released its lock. */
  readonly stopped: Promise<void>;
  private readonly onSignal: Record<string, () => void> = {};

  constructor(opts: DaemonOptions = {}) {
    this.opts = opts;
    this.config = loadConfig({ configPath: opts.configPath, env: opts.env, scheduleCheck: cronProblem });
    this.log = this.makeLogger(this.config);
    for (const w of this.config.warnings) this.log.warn(`${this.config.file ?? 'config'}${w.line ? `:${w.line}` : ''}: ${w.message}`);
    this.state = statePaths(this.config.stateDir);
    this.batcher = new DirtyBatcher(this.config.frequencySeconds * 1000, () => this.wake());
    this.schedule = new ReconcileSchedule(() => this.requestReconcile('schedule'));
    const retry = backoffFromEnv(opts.env ?? process.env);
    this.pushBackoff = new Backoff(retry);
    this.snapshotBackoff = new Backoff(retry);
    this.health = new PushHealth(this.config.hostname, async (n) => {
      await postCallback(this.config.callbackUrl, n, this.log, { what: 'daemon' });
    });
    this.stopped = new Promise((r) => (this.resolveStopped = r));
  }

  private makeLogger(config: PachaConfig): Logger {
    return createLogger({ verbose: this.opts.verbose === true, file: config.logFile });
  }

  async start(): Promise<void> {
    ensureStateDir(this.config.stateDir);
    this.lock = acquireLock(this.state.lock, 'daemon', this.log);
    try {
      await this.startLocked();
    } catch (e) {
      // Do not leave a lock or open watches behind a daemon that could not start.
      await this.stopWatcher().catch(() => undefined);
      for (const [sig, fn] of Object.entries(this.onSignal)) process.off(sig, fn);
      this.lock?.release();
      this.lock = undefined;
      throw e;
    }
  }

  private async startLocked(): Promise<void> {
    for (const sig of ['SIGTERM', 'SIGINT'] as const) {
      this.onSignal[sig] = () => void this.stop(sig);
      process.on(sig, this.onSignal[sig]);
    }
    this.onSignal.SIGHUP = () => this.requestReload();
    process.on('SIGHUP', this.onSignal.SIGHUP);

    const c = this.config;
    this.log.info(
      `pacha ${PACHA_VERSION} daemon started (pid ${process.pid}, host ${c.hostname}, master ${describeMaster(c)}, ` +
        `frequency ${c.frequencySeconds}s, reconcile "${c.schedule}")`,
    );
    if (c.host === undefined) this.log.warn('pacha.host is not set: snapshots are kept locally and not pushed');
    this.heartbeat();
    await this.startWatcher();
    if (this.stopping) return;
    this.schedule.arm(c.schedule);
    this.heartbeatTimer = setInterval(() => this.heartbeat(), HEARTBEAT_MS);
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
    this.log.info(
      `watching ${this.roots.length} path${this.roots.length === 1 ? '' : 's'} (${watcher.watchedDirectories()} directories, ready in ${Date.now() - t0} ms): ${this.roots.join(', ')}`,
    );
    this.heartbeat();
  }

  private async stopWatcher(): Promise<void> {
    const w = this.watcher;
    this.watcher = undefined;
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
    if (this.stopping || (this.current === 'starting' && this.heartbeatTimer === undefined)) return;
    if (this.pumping) return;
    this.pumping = this.pump().finally(() => {
      this.pumping = undefined;
      if (!this.stopping && this.hasDueWork()) this.wake();
      else this.armWakeTimer();
    });
  }

  private hasDueWork(): boolean {
    const now = Date.now();
    const snapshotDue = (this.reconcileReason !== undefined && this.roots.length > 0) || this.batcher.isDue;
    if (snapshotDue && now >= this.snapshotNotBefore) return true;
    return this.pushNeeded && this.config.host !== undefined && now >= this.pushNotBefore;
  }

  private async pump(): Promise<void> {
    while (!this.stopping) {
      const now = Date.now();
      if (now >= this.snapshotNotBefore) {
        if (this.reconcileReason !== undefined && this.roots.length > 0) {
          const reason = this.reconcileReason;
          this.reconcileReason = undefined;
          // The full scan covers everything marked so far; later events start a new batch.
          this.batcher.clear();
          await this.snapshotStep({ paths: undefined, firstChangeAt: now }, reason);
          continue;
        }
        this.reconcileReason = undefined;
        if (this.batcher.isDue) {
          const batch = this.batcher.take();
          if (batch) await this.snapshotStep(batch, batch.paths === undefined ? 'too many changes' : undefined);
          continue;
        }
      }
      if (this.pushNeeded && this.config.host !== undefined && now >= this.pushNotBefore) {
        await this.pushStep();
        continue;
      }
      break;
    }
    if (!this.stopping) this.setState('idle');
  }

  private armWakeTimer(): void {
    if (this.wakeTimer !== undefined) clearTimeout(this.wakeTimer);
    this.wakeTimer = undefined;
    if (this.stopping) return;
    const now = Date.now();
    const times: number[] = [];
    if (this.pushNeeded && this.config.host !== undefined && this.pushNotBefore > now) times.push(this.pushNotBefore);
    if ((this.reconcileReason !== undefined || this.batcher.isDue) && this.snapshotNotBefore > now) times.push(this.snapshotNotBefore);
    if (times.length === 0) return;
    this.wakeTimer = setTimeout(() => {
      this.wakeTimer = undefined;
      this.wake();
    }, Math.min(...times) - now);
  }

  /** A snapshot of the batch's paths, or a full reconcile when `reconcile` names why. */
  private async snapshotStep(batch: Batch, reconcile: string | undefined): Promise<void> {
    const full = batch.paths === undefined;
    this.setState(full ? 'reconcile' : 'snapshot');
    const t0 = Date.now();
    try {
      const env = { config: this.config, state: this.state, log: this.log };
      // Full scans in a worker thread (their peak memory leaves with it); small ones in place.
      const res = full
        ? await takeSnapshotIsolated(env, { message: reconcile ? `reconcile (${reconcile})` : undefined })
        : await takeSnapshot(env, { dirty: batch.paths });
      this.record(() => recordSnapshot(this.state, res));
      this.snapshotBackoff.reset();
      this.snapshotNotBefore = 0;
      const ms = Date.now() - t0;
      const what = full ? `reconcile (${reconcile ?? 'full scan'})` : `${batch.paths!.length} changed path${batch.paths!.length === 1 ? '' : 's'}`;
      const s = res.summary;
      if (res.commit) {
        this.log.info(
          `snapshot ${res.commit.slice(0, 12)}: ${s.added} added, ${s.changed} changed, ${s.deleted} deleted, ${s.metadataOnly} metadata-only ` +
            `(${what}, ${bytes(s.bytesRead)} read, ${ms} ms${full ? '' : `, ${Date.now() - batch.firstChangeAt} ms after the first change`})`,
        );
        this.pushNeeded = true;
      } else if (full) {
        this.log.info(`${what}: no changes (${s.total} paths checked, ${ms} ms)`);
      } else {
        this.log.debug(`no changes in ${what} (${ms} ms)`);
      }
      for (const w of res.warnings) this.log.debug(`snapshot warning: ${w}`);
      if (this.log.verbose) {
        const m = process.memoryUsage();
        this.log.debug(`memory: rss ${(m.rss / 2 ** 20).toFixed(0)} MiB, heap used ${(m.heapUsed / 2 ** 20).toFixed(0)} MiB`);
      }
    } catch (e) {
      const msg = errorMessage(e);
      const delay = this.snapshotBackoff.next();
      this.snapshotNotBefore = Date.now() + delay;
      this.log.error(`snapshot failed: ${msg} (retry in ${seconds(delay)})`);
      this.log.debug((e as Error)?.stack ?? '');
      this.record(() => recordError(this.state, full ? 'reconcile' : 'snapshot', msg));
      // Nothing is dropped: the same paths (or the full scan) are tried again.
      if (full) this.reconcileReason ??= reconcile ?? 'retry';
      else for (const p of batch.paths!) this.batcher.mark(p);
    }
    this.heartbeat();
  }

  /** Write a step's result to the status files; a failure to do so is no reason to stop. */
  private record(write: () => void): void {
    try {
      write();
    } catch (e) {
      this.log.debug(`cannot write ${this.state.status}: ${errorMessage(e)}`);
    }
  }

  private async pushStep(): Promise<void> {
    this.setState('push');
    const t0 = Date.now();
    try {
      const res = await this.pushOverConnection();
      this.record(() => recordPush(this.state, res));
      const recovered = this.pushBackoff.failures;
      this.pushNeeded = false;
      this.pushBackoff.reset();
      this.pushNotBefore = 0;
      if (res.commits > 0) {
        this.log.info(
          `pushed ${res.commits} snapshot${res.commits === 1 ? '' : 's'} to ${describeMaster(this.config)} ` +
            `(${res.objects} objects, ${bytes(res.bytes)}, ${Date.now() - t0} ms); master at ${res.remoteHead?.slice(0, 12) ?? '?'}`,
        );
      } else {
        this.log.debug(`master is up to date (${Date.now() - t0} ms)`);
      }
      if (recovered > 0) this.log.info(`push recovered after ${recovered} failed attempt${recovered === 1 ? '' : 's'}`);
      this.health.succeeded(0);
    } catch (e) {
      const msg = errorMessage(e);
      if (this.stopping) {
        this.log.info(`push abandoned: stopping (${msg}); the next start pushes it`);
        return;
      }
      const delay = this.pushBackoff.next();
      this.pushNotBefore = Date.now() + delay;
      let pending = 0;
      try {
        pending = (await recordPushFailure(this.state, msg)) ?? 0;
      } catch (e) {
        this.log.debug(`cannot write ${this.state.status}: ${errorMessage(e)}`);
      }
      this.log.warn(`push failed: ${msg} (retry in ${seconds(delay)}, ${pending} snapshot${pending === 1 ? '' : 's'} pending)`);
      this.health.failed(msg, pending);
    }
    this.heartbeat();
  }

  /**
   * Push over the kept connection. A kept connection may have died while idle (the master
   * restarted, a NAT forgot it): then one immediate retry on a fresh connection, not a backoff.
   */
  private async pushOverConnection(): Promise<PushResult> {
    const log = quieter(this.log);
    const attempt = async () => {
      const { transport, reused } = await this.connection.get(this.config, log);
      try {
        const res = await pushSnapshots({ config: this.config, state: this.state, log }, {
          transport,
          signal: this.abort.signal,
          // The daemon's own backoff spaces the attempts; no second retry loop inside.
          retry: { attempts: 1 },
        });
        this.connection.release();
        return { res, reused, error: undefined };
      } catch (e) {
        await this.connection.close();
        return { res: undefined, reused, error: e };
      }
    };
    let r = await attempt();
    if (r.error !== undefined && r.reused && !this.stopping) {
      this.log.debug(`push on the kept connection failed (${errorMessage(r.error)}); reconnecting`);
      r = await attempt();
    }
    if (r.error !== undefined) throw r.error;
    return r.res!;
  }

  // ---- heartbeat ----

  private setState(s: DaemonState): void {
    if (this.current === s) return;
    this.current = s;
    this.heartbeat();
  }

  private heartbeat(): void {
    try {
      const failures = this.pushBackoff.failures;
      recordHeartbeat(this.state, {
        pid: process.pid,
        version: PACHA_VERSION,
        startedAt: this.startedAt.toISOString(),
        heartbeat: new Date().toISOString(),
        state: this.current,
        watching: this.roots,
        consecutivePushFailures: failures,
        nextPushAttempt: failures > 0 ? new Date(this.pushNotBefore).toISOString() : undefined,
        nextReconcile: this.schedule.nextRun()?.toISOString(),
      });
    } catch (e) {
      this.log.debug(`cannot write heartbeat: ${errorMessage(e)}`);
    }
  }

  // ---- reload ----

  requestReload(): void {
    if (this.stopping) return;
    if (this.heartbeatTimer === undefined) {
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
      next = loadConfig({ configPath: this.opts.configPath, env: this.opts.env, scheduleCheck: cronProblem });
    } catch (e) {
      this.log.error(`reload: configuration not changed, it has an error: ${errorMessage(e)}`);
      return;
    }
    const prev = this.config;
    const changes: string[] = [];
    for (const k of new Set([...Object.keys(prev.effective), ...Object.keys(next.effective)])) {
      const a = prev.effective[k];
      const b = next.effective[k];
      if (a === b) continue;
      // A callback URL may carry a token: say that it changed, not what it is.
      changes.push(k === 'pacha.callback.url' ? `${k} changed` : `${k}: ${a ?? '(unset)'} -> ${b ?? '(unset)'}`);
    }
    const nextRoots = effectiveRoots(next, this.state);
    const added = nextRoots.filter((r) => !this.roots.includes(r));
    const removed = this.roots.filter((r) => !nextRoots.includes(r));
    if (added.length > 0) changes.push(`now watching ${added.join(', ')}`);
    if (removed.length > 0) changes.push(`no longer watching ${removed.join(', ')}`);

    if (next.logFile !== prev.logFile) this.log = this.makeLogger(next);
    this.config = next;
    for (const w of next.warnings) this.log.warn(`${next.file ?? 'config'}${w.line ? `:${w.line}` : ''}: ${w.message}`);
    this.log.info(`reload: ${changes.length > 0 ? changes.join('; ') : 'nothing changed'}`);
    this.batcher.setDelay(next.frequencySeconds * 1000);
    if (next.schedule !== prev.schedule) this.schedule.arm(next.schedule);
    const ignoreChanged = next.ignore.join(',') !== prev.ignore.join(',');
    if (added.length > 0 || removed.length > 0 || ignoreChanged || this.watcher === undefined) {
      await this.stopWatcher();
      if (this.stopping) return;
      await this.startWatcher();
      this.requestReconcile('reload');
    }
    if (masterChanged(prev, next)) {
      await this.connection.close();
      this.pushNeeded = true;
      this.pushBackoff.reset();
      this.pushNotBefore = 0;
    }
    this.heartbeat();
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
    this.heartbeat();
    this.abort.abort();
    this.schedule.stop();
    if (this.wakeTimer !== undefined) clearTimeout(this.wakeTimer);
    if (this.heartbeatTimer !== undefined) clearInterval(this.heartbeatTimer);
    this.batcher.clear();
    await this.stopWatcher().catch(() => undefined);
    await this.pumping?.catch(() => undefined);
    await this.reloading.catch(() => undefined);
    await this.connection.close();
    this.current = 'stopped';
    this.heartbeat();
    this.lock?.release();
    this.lock = undefined;
    for (const [sig, fn] of Object.entries(this.onSignal)) process.off(sig, fn);
    // SIGTERM/SIGINT handlers stay away from here on, but a late second signal should still end us.
    this.log.info('stopped');
    this.resolveStopped();
  }
}

/** Run the daemon until SIGTERM/SIGINT. Throws (before starting) when another pacha holds the lock. */
export async function runDaemon(opts: DaemonOptions = {}): Promise<void> {
  // A long-lived process that mostly waits: have V8 favour a small heap over peak speed. Watching
  // 100,000 files drops from ~480 MiB to ~130 MiB resident (bench/results/daemon.md). Full scans
  // run in a child process without this flag.
  if (process.env.PACHA_DAEMON_V8_DEFAULTS !== '1') v8.setFlagsFromString('--optimize-for-size');
  const d = new Daemon(opts);
  const started = d.start();
  // A SIGTERM during start-up (e.g. while the watcher scans a big tree) ends the daemon
  // without waiting for the start to complete.
  started.catch(() => undefined);
  await Promise.race([started, d.stopped]);
  await d.stopped;
}
