import type { PachaConfig } from '@pacha/shared/config';
import type { Logger } from '@pacha/shared/log';
import { openTransport } from '@pacha/shared/transport/open';
import type { Transport } from '@pacha/shared/transport/transport';

// One connection to the master, kept open between pushes that follow each other closely:
// an SSH handshake costs more than a small push. Closed after IDLE_CLOSE_MS without a push,
// after any failure (the next push reconnects), on reload and on stop.

export const IDLE_CLOSE_MS = 60_000;
export const PROBE_TIMEOUT_MS = 5_000;
/** A connection that answered this recently is used without a probe (one round trip less per push). */
export const PROBE_AFTER_IDLE_MS = 5_000;

/** Does the other end answer at all (an error reply counts: it is alive) within the time? */
async function answers(t: Transport, probePath: string, timeoutMs: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<boolean>((r) => (timer = setTimeout(() => r(false), timeoutMs)));
  const probe = t.stat(probePath).then(
    () => true,
    () => true,
  );
  try {
    return await Promise.race([probe, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

export class MasterConnection {
  private transport: Transport | undefined;
  private idleTimer: NodeJS.Timeout | undefined;
  /** When the last push on the connection ended (ms since the epoch). */
  private releasedAt = 0;
  private readonly idleMs: number;

  constructor(idleMs = IDLE_CLOSE_MS) {
    this.idleMs = idleMs;
  }

  /** The open connection, or a new one. `reused` says whether it was already open. */
  async get(config: PachaConfig, log: Logger): Promise<{ transport: Transport; reused: boolean }> {
    this.clearIdle();
    if (this.transport) {
      // One cheap round trip first: a connection that died silently (a NAT forgot it, the
      // master hung) would otherwise stall the push until the SSH keepalive gives up. Not
      // within seconds of a push that completed on it.
      if (Date.now() - this.releasedAt < PROBE_AFTER_IDLE_MS) return { transport: this.transport, reused: true };
      if (await answers(this.transport, config.hostsPath, PROBE_TIMEOUT_MS)) return { transport: this.transport, reused: true };
      log.debug(`the kept connection to the master did not answer within ${PROBE_TIMEOUT_MS} ms; reconnecting`);
      await this.close();
    }
    this.transport = await openTransport(config, log);
    return { transport: this.transport, reused: false };
  }

  /** The push is done: keep the connection for a while. */
  release(): void {
    this.clearIdle();
    if (!this.transport) return;
    this.releasedAt = Date.now();
    this.idleTimer = setTimeout(() => void this.close(), this.idleMs);
    this.idleTimer.unref();
  }

  async close(): Promise<void> {
    this.clearIdle();
    this.releasedAt = 0;
    const t = this.transport;
    this.transport = undefined;
    if (t) await t.close().catch(() => undefined);
  }

  private clearIdle(): void {
    if (this.idleTimer !== undefined) clearTimeout(this.idleTimer);
    this.idleTimer = undefined;
  }
}
