// Collects the host paths the watcher saw change and says when a batch is due: at most
// `delayMs` after the FIRST change of a batch (later changes join it without pushing the
// deadline back, so a file edited every second still gets snapshotted). Delay 0 still waits a
// few milliseconds so that a burst of events lands in one batch.

export const MIN_SETTLE_MS = 20;
/** Beyond this many dirty paths a full reconcile is cheaper than a path list. */
export const MAX_DIRTY_PATHS = 50_000;

export interface Batch {
  /** undefined = too many paths (or an overflow): do a full scan instead. */
  paths: string[] | undefined;
  /** When the first change of this batch was seen (ms since epoch). */
  firstChangeAt: number;
}

export class DirtyBatcher {
  private paths = new Set<string>();
  private overflow = false;
  private firstAt = 0;
  private timer: NodeJS.Timeout | undefined;
  private due = false;
  private delayMs: number;
  private readonly onDue: () => void;
  private readonly maxPaths: number;

  constructor(delayMs: number, onDue: () => void, maxPaths = MAX_DIRTY_PATHS) {
    this.delayMs = delayMs;
    this.onDue = onDue;
    this.maxPaths = maxPaths;
  }

  get size(): number {
    return this.paths.size;
  }

  /** True when a batch exists and its deadline has passed. */
  get isDue(): boolean {
    return this.due && (this.paths.size > 0 || this.overflow);
  }

  get isEmpty(): boolean {
    return this.paths.size === 0 && !this.overflow;
  }

  setDelay(ms: number): void {
    this.delayMs = ms;
  }

  mark(hostPath: string): void {
    if (!this.overflow) {
      this.paths.add(hostPath);
      if (this.paths.size > this.maxPaths) {
        this.overflow = true;
        this.paths.clear();
      }
    }
    this.arm();
  }

  /** Take the current batch (due or not) and start a new one. */
  take(): Batch | undefined {
    if (this.isEmpty) {
      this.reset();
      return undefined;
    }
    const batch: Batch = { paths: this.overflow ? undefined : [...this.paths], firstChangeAt: this.firstAt };
    this.reset();
    return batch;
  }

  /** Drop everything (a full reconcile is about to cover it). */
  clear(): void {
    this.reset();
  }

  private arm(): void {
    if (this.timer !== undefined || this.due) return;
    this.firstAt = Date.now();
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.due = true;
      this.onDue();
    }, Math.max(this.delayMs, MIN_SETTLE_MS));
  }

  private reset(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    this.due = false;
    this.paths = new Set();
    this.overflow = false;
    this.firstAt = 0;
  }
}
