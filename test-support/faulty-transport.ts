import type { RemoteEntry, RemoteStat, Transport } from '@pacha/shared/transport/transport';

// A Transport wrapper that injects faults, for tests only (after kopia's blobtesting/faulty.go):
// each Fault picks calls by method and remote path and runs its action before the call, while it
// is in flight, or after it settled. An action may kill the process (crash tests) or throw, which
// makes the call reject with that error ("before": the call never happens; "after": it happened
// but its answer is lost).

export type TransportOp = Exclude<keyof Transport, 'description'>;

export interface Fault {
  /** Which method; every method when absent. */
  op?: TransportOp;
  /** Matched against the remote path the call acts on (the target of a rename). */
  path?: RegExp;
  /** Only the n-th matching call, 1-based; every matching call when absent. */
  nth?: number;
  when: 'before' | 'during' | 'after';
  action: () => void;
}

/** The remote path a call acts on: the target of a rename and of an upload. */
function remotePath(op: TransportOp, args: unknown[]): string {
  const i = op === 'rename' || op === 'upload' ? 1 : 0;
  return typeof args[i] === 'string' ? args[i] : '';
}

export class FaultyTransport implements Transport {
  readonly description: string;
  /** Calls made so far, every method but close. */
  calls = 0;
  private readonly seen = new Map<Fault, number>();
  private readonly inner: Transport;
  private readonly faults: Fault[];

  constructor(inner: Transport, faults: Fault[]) {
    this.inner = inner;
    this.faults = faults;
    this.description = inner.description;
  }

  private async call<T>(op: TransportOp, args: unknown[], run: () => Promise<T>): Promise<T> {
    this.calls++;
    const where = remotePath(op, args);
    const hit = this.faults.filter((f) => {
      if ((f.op !== undefined && f.op !== op) || (f.path !== undefined && !f.path.test(where))) return false;
      const n = (this.seen.get(f) ?? 0) + 1;
      this.seen.set(f, n);
      return f.nth === undefined || n === f.nth;
    });
    const at = (when: Fault['when']) => { for (const f of hit) if (f.when === when) f.action(); };
    at('before');
    const pending = run();
    if (hit.some((f) => f.when === 'during')) setImmediate(() => at('during'));
    try {
      return await pending;
    } finally {
      at('after');
    }
  }

  stat(p: string): Promise<RemoteStat | null> { return this.call('stat', [p], () => this.inner.stat(p)); }
  list(dir: string): Promise<RemoteEntry[]> { return this.call('list', [dir], () => this.inner.list(dir)); }
  readFile(p: string): Promise<Buffer> { return this.call('readFile', [p], () => this.inner.readFile(p)); }
  writeFile(p: string, data: Uint8Array | string): Promise<void> { return this.call('writeFile', [p], () => this.inner.writeFile(p, data)); }
  createExclusive(p: string, data: Uint8Array | string): Promise<boolean> { return this.call('createExclusive', [p], () => this.inner.createExclusive(p, data)); }
  download(remote: string, localFile: string, arrived?: (bytes: number) => void): Promise<void> { return this.call('download', [remote, localFile], () => this.inner.download(remote, localFile, arrived)); }
  upload(localFile: string, remote: string): Promise<void> { return this.call('upload', [localFile, remote], () => this.inner.upload(localFile, remote)); }
  rename(from: string, to: string): Promise<void> { return this.call('rename', [from, to], () => this.inner.rename(from, to)); }
  mkdirp(p: string): Promise<void> { return this.call('mkdirp', [p], () => this.inner.mkdirp(p)); }
  remove(p: string): Promise<void> { return this.call('remove', [p], () => this.inner.remove(p)); }
  close(): Promise<void> { return this.inner.close(); }
}

export function faultyTransport(inner: Transport, faults: Fault[]): FaultyTransport {
  return new FaultyTransport(inner, faults);
}
