import { describe, expect, it } from 'vitest';
import { Backoff } from '../src/backoff.ts';

// The one backoff rule: push retries and the daemon's steps wait by it.

describe('Backoff', () => {
  it('doubles from the initial delay up to the cap, jitter within bounds', () => {
    const b = new Backoff({ initialMs: 5000, maxMs: 300_000, jitter: 0, random: () => 0.5 });
    const seq = Array.from({ length: 10 }, () => b.next());
    expect(seq).toEqual([5000, 10_000, 20_000, 40_000, 80_000, 160_000, 300_000, 300_000, 300_000, 300_000]);
    expect(b.failures).toBe(10);
    b.reset();
    expect(b.next()).toBe(5000);
    const lo = new Backoff({ initialMs: 1000, jitter: 0.2, random: () => 0 });
    const hi = new Backoff({ initialMs: 1000, jitter: 0.2, random: () => 0.999999 });
    expect(lo.next()).toBe(800);
    expect(hi.next()).toBe(1200);
    const capped = new Backoff({ initialMs: 1000, maxMs: 1000, jitter: 0.2, random: () => 0.999999 });
    expect(capped.next()).toBe(1000);
  });

});
