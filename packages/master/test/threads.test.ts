import { once } from 'node:events';
import type { Worker } from 'node:worker_threads';
import { describe, expect, it } from 'vitest';
import { ThreadCache } from '../src/threads.ts';

// The master's thread cache (threads.ts): threads are reused, and one that dies is forgotten
// without taking the master with it.
const fixture = new URL('./fixtures/x.ts', import.meta.url).href;
// events.once would reject on the thread's 'error': only its end is awaited here.
const exited = (w: Worker) => new Promise<void>((resolve) => w.once('exit', () => resolve()));

describe('ThreadCache', () => {
  it('reuses a thread given back and starts one only when none is idle', async () => {
    const cache = new ThreadCache(fixture, 'echo-thread');
    cache.warm(2);
    expect([cache.alive, cache.idleCount]).toEqual([2, 2]);
    const a = cache.take();
    const b = cache.take();
    expect([cache.alive, cache.idleCount]).toEqual([2, 0]);
    const c = cache.take();
    expect(cache.alive).toBe(3);
    a.postMessage('ping');
    expect(await once(a, 'message')).toEqual(['ping']);
    cache.giveBack(a);
    expect(cache.take()).toBe(a);
    for (const w of [a, b, c]) await w.terminate();
    expect(cache.alive).toBe(0);
  });

  it('forgets a thread that exits or throws, idle or taken, and the process goes on', async () => {
    const cache = new ThreadCache(fixture, 'echo-thread');
    cache.warm(2);
    const a = cache.take();
    a.postMessage('throw');
    await exited(a);
    expect(cache.alive).toBe(1);
    const b = cache.take();
    cache.giveBack(b);
    b.postMessage('exit');
    await exited(b);
    expect([cache.alive, cache.idleCount]).toEqual([0, 0]);
    const c = cache.take();
    expect(c).not.toBe(b);
    expect(cache.alive).toBe(1);
    await c.terminate();
  });
});
