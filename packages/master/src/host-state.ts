import type { ObjectType } from '@pacha/shared/git/objects';
import { Refusal } from './host-view.ts';

// What the master knows about one host while any of its connections is open: one object per
// host, shared by all its connections and channels (never per channel), so that a limit or a
// rename in progress holds whichever channel the next request comes on.

export interface HostLimits {
  /** Open file and directory handles of one host, over all its connections and channels. */
  maxHandles: number;
  /** Authenticated connections of one host at a time. */
  maxConnections: number;
}

export const HOST_LIMIT_DEFAULTS: HostLimits = { maxHandles: 64, maxConnections: 8 };

export class HostState {
  readonly host: string;
  readonly limits: HostLimits;
  handles = 0;
  connections = 0;
  /**
   * Types of the objects of packs this master verified whole and placed since the host's last
   * ref update: the forward check takes a blob's type from here instead of reading it again.
   */
  readonly verified = new Map<string, ObjectType>();
  /** Packs whose checksum this master computed itself over the file it placed (checkPack). */
  readonly checksummed = new Set<string>();
  private tail: Promise<unknown> = Promise.resolve();

  constructor(host: string, limits: HostLimits) {
    this.host = host;
    this.limits = limits;
  }

  /**
   * Reserve a handle now, before any await: pipelined OPENs each see the count the ones before
   * them left. Throws Refusal at the limit; release() gives it back.
   */
  reserveHandle(): void {
    if (this.handles >= this.limits.maxHandles) {
      throw new Refusal('failure', `too many open handles for ${this.host} (limit ${this.limits.maxHandles} over all its connections); close some first`);
    }
    this.handles++;
  }

  releaseHandle(): void {
    if (this.handles > 0) this.handles--;
  }

  /** Run fn after every earlier one of this host has finished: renames and ref updates never interleave. */
  serialize<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.tail.then(fn, fn);
    this.tail = run.catch(() => undefined);
    return run;
  }
}

/**
 * One state per host that ever logged in (only hosts with a key can): kept after its last
 * connection closes, so that a rename still running from a closed connection stays serialised
 * with the next connection's.
 */
export class HostStates {
  private readonly states = new Map<string, HostState>();
  private readonly limits: HostLimits;

  constructor(limits: HostLimits = HOST_LIMIT_DEFAULTS) {
    this.limits = limits;
  }

  /** A new authenticated connection of host; null when the host has its maximum open already. */
  connect(host: string): HostState | null {
    let s = this.states.get(host);
    if (!s) this.states.set(host, (s = new HostState(host, this.limits)));
    if (s.connections >= this.limits.maxConnections) return null;
    s.connections++;
    return s;
  }

  disconnect(s: HostState): void {
    if (s.connections > 0) s.connections--;
  }

  get size(): number {
    return this.states.size;
  }
}
