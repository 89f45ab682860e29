import type { PachaConfig } from '@pacha/shared/config';
import type { Logger } from '@pacha/shared/log';
import { openTransport } from '@pacha/shared/transport/open';
import type { Transport } from '@pacha/shared/transport/transport';

// One connection to the master, kept open between pushes that follow each other closely:
// an SSH handshake costs more than a small push. Closed after IDLE_CLOSE_MS without a push,
// after any failure (the next push reconnects), on reload and on stop.

export const IDLE_CLOSE_MS = 60_000;

export class MasterConnection {
  private transport: Transport | undefined;
  private idleTimer: NodeJS.Timeout | undefined;
  private readonly idleMs: number;

  constructor(idleMs = IDLE_CLOSE_MS) {
    this.idleMs = idleMs;
  }

  /** The open connection, or a new one. `reused` says whether it was already open. */
  async get(config: PachaConfig, log: Logger): Promise<{ transport: Transport; reused: boolean }> {
    this.clearIdle();
    if (this.transport) return { transport: this.transport, reused: true };
    this.transport = await openTransport(config, log);
    return { transport: this.transport, reused: false };
  }

  /** The push is done: keep the connection for a while. */
  release(): void {
    this.clearIdle();
    if (!this.transport) return;
    this.idleTimer = setTimeout(() => void this.close(), this.idleMs);
    this.idleTimer.unref();
  }

  async close(): Promise<void> {
    this.clearIdle();
    const t = this.transport;
    this.transport = undefined;
    if (t) await t.close().catch(() => undefined);
  }

  private clearIdle(): void {
    if (this.idleTimer !== undefined) clearTimeout(this.idleTimer);
    this.idleTimer = undefined;
  }
}
