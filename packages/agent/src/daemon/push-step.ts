import type { Logger } from '@pacha/shared/log';
import { errorMessage } from '@pacha/shared/errors';
import { pushSnapshots, type PushEnv, type PushResult } from '@pacha/shared/push/push';
import { describeMaster, plural, seconds, bytes } from '../format.ts';
import { pendingSinceLastPush } from '../status/status-files.ts';
import type { BackoffOptions } from '@pacha/shared/backoff';
import type { PackIndexCache } from '@pacha/shared/git/pack-index';
import { PushHealth, type PushNotice } from './callback-notify.ts';
import { MasterConnection } from './connection.ts';
import type { StepResult } from './steps.ts';
import { StepGate } from './step-scheduler.ts';

// The daemon's push step: send what the master lacks over a connection kept between pushes.
// A failed push waits out the backoff (the gate) while snapshots go on; the callback hears of
// an outage once, and of its end (PushHealth).

/** The daemon logs one line per push itself: the library's own summary lines become detail (-v). */
function quieter(log: Logger): Logger {
  return { ...log, verbose: log.verbose, info: (m) => log.debug(m) };
}

export class PushStep {
  readonly gate: StepGate;
  private readonly connection = new MasterConnection();
  private readonly health: PushHealth;
  private readonly signal: AbortSignal;

  private readonly indexes: PackIndexCache | undefined;
  /** The last push to this master completed (push.ts afterCompletedPush). */
  private completed = false;

  constructor(opts: { hostname: string; backoff: BackoffOptions; signal: AbortSignal; notify: (n: PushNotice) => Promise<void>; indexes?: PackIndexCache }) {
    this.gate = new StepGate(opts.backoff);
    this.indexes = opts.indexes;
    this.health = new PushHealth(opts.hostname, opts.notify);
    this.signal = opts.signal;
  }

  /** One push; undefined when it was abandoned because the daemon is stopping. */
  async run(env: PushEnv): Promise<StepResult | undefined> {
    const { log } = env;
    const t0 = Date.now();
    try {
      const res = await this.pushOverConnection(env);
      const ms = Date.now() - t0;
      const recovered = this.gate.failures;
      this.gate.succeeded();
      if (res.commits > 0) {
        log.info(
          `pushed ${plural(res.commits, 'snapshot')} to ${describeMaster(env.config)} ` +
            `(${res.objects} objects, ${bytes(res.bytes)}, ${ms} ms); master at ${res.remoteHead?.slice(0, 12) ?? '?'}`,
        );
      } else {
        log.debug(`master is up to date (${ms} ms)`);
      }
      if (recovered > 0) log.info(`push recovered after ${plural(recovered, 'failed attempt')}`);
      this.health.succeeded(0);
      return { step: 'push', ms, ok: true, result: res };
    } catch (e) {
      const msg = errorMessage(e);
      if (this.signal.aborted) {
        log.info(`push abandoned: stopping (${msg}); the next start pushes it`);
        return undefined;
      }
      const delay = this.gate.failed();
      const pending = await pendingSinceLastPush(env.state);
      log.warn(`push failed: ${msg} (retry in ${seconds(delay)}, ${plural(pending ?? 0, 'snapshot')} pending)`);
      this.health.failed(msg, pending ?? 0);
      return { step: 'push', ms: Date.now() - t0, ok: false, error: msg, pending };
    }
  }

  /** The master's address or identity changed: a new connection, and no backoff left over. */
  async masterChanged(): Promise<void> {
    this.completed = false;
    await this.connection.close();
    this.gate.succeeded();
  }

  close(): Promise<void> {
    return this.connection.close();
  }

  /**
   * Push over the kept connection. A kept connection may have died while idle (the master
   * restarted, a NAT forgot it): then one immediate retry on a fresh connection, not a backoff.
   */
  private async pushOverConnection(env: PushEnv): Promise<PushResult> {
    const log = quieter(env.log);
    const attempt = async () => {
      const { transport, reused } = await this.connection.get(env.config, log);
      try {
        const res = await pushSnapshots({ ...env, log }, {
          transport,
          signal: this.signal,
          // The gate's backoff spaces the attempts; no second retry loop inside.
          retry: { attempts: 1 },
          indexes: this.indexes,
          afterCompletedPush: this.completed,
        });
        this.connection.release();
        this.completed = true;
        return { res, reused, error: undefined };
      } catch (e) {
        this.completed = false;
        await this.connection.close();
        return { res: undefined, reused, error: e };
      }
    };
    let r = await attempt();
    if (r.error !== undefined && r.reused && !this.signal.aborted) {
      log.debug(`push on the kept connection failed (${errorMessage(r.error)}); reconnecting`);
      r = await attempt();
    }
    if (r.error !== undefined) throw r.error;
    return r.res!;
  }
}
