import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

// Generated trees for benchmarks: deterministic (seeded) text-like files, so runs compare alike.

export function tempDir(prefix: string): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), `pacha-bench-${prefix}-`));
}

/** A small seeded PRNG (mulberry32). */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const WORDS = 'server listen port user group include path timeout enable disable log level cache root index worker allow deny proxy upstream ssl cert key max min'.split(' ');

/** Text that looks like a configuration file, `size` bytes long. */
export function textOf(size: number, rnd: () => number): Buffer {
  const parts: string[] = [];
  let n = 0;
  while (n < size) {
    const line = `${WORDS[Math.floor(rnd() * WORDS.length)]} = ${Math.floor(rnd() * 1e9).toString(36)} ${WORDS[Math.floor(rnd() * WORDS.length)]}\n`;
    parts.push(line);
    n += line.length;
  }
  return Buffer.from(parts.join('')).subarray(0, size);
}

export interface TreeSpec {
  files: number;
  dirs: number;
  minSize: number;
  maxSize: number;
  seed?: number;
}

/** Write `files` files spread over `dirs` directories (d0000/f00000...) under dir. */
export function generateTree(dir: string, spec: TreeSpec): { files: number; bytes: number } {
  const rnd = prng(spec.seed ?? 1);
  let bytes = 0;
  for (let d = 0; d < spec.dirs; d++) fs.mkdirSync(path.join(dir, `d${String(d).padStart(4, '0')}`), { recursive: true });
  for (let f = 0; f < spec.files; f++) {
    const d = f % spec.dirs;
    const size = spec.minSize + Math.floor(rnd() * (spec.maxSize - spec.minSize + 1));
    fs.writeFileSync(path.join(dir, `d${String(d).padStart(4, '0')}`, `f${String(f).padStart(6, '0')}.conf`), textOf(size, rnd));
    bytes += size;
  }
  return { files: spec.files, bytes };
}

/** A file of `size` bytes of incompressible data, written in chunks (memory stays small). */
export function generateBigFile(file: string, size: number): void {
  const fd = fs.openSync(file, 'w');
  const chunk = Buffer.alloc(8 * 1024 * 1024);
  const rnd = prng(7);
  for (let i = 0; i < chunk.length; i += 4) chunk.writeUInt32LE((rnd() * 4294967296) >>> 0, i);
  try {
    for (let off = 0; off < size; off += chunk.length) {
      chunk.writeUInt32LE(off >>> 0, 0);
      fs.writeSync(fd, chunk, 0, Math.min(chunk.length, size - off));
    }
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * Before a timed series: the disk as a fresh machine's, for every tool alike. This machine's ext4
 * has no journal, and without one ext4 does not reuse an inode deleted in the last 60 s (360 s
 * while its inode-table block is dirty) as long as that block is in the buffer cache: each new
 * inode scans past them, from the start of its group, one cache lookup each (perf: 80% of a
 * `cp -a` of 10,000 files right after an `rm -rf` of a copy, which took 2.5 s instead of 0.35 s).
 * A tree deleted before a timed command (the previous tool's destination, the previous
 * benchmark's data, another user's) thus slowed whichever tool came next. So:
 * - `base` gets ext4's top-directory flag (`chattr +T`), so that each destination made in it
 *   goes to a little-used block group (as ext4 spreads the directories of the root), not next
 *   to /tmp, where every benchmark on the machine creates and deletes its trees;
 * - `sync`, then the clean page and buffer cache dropped (root only), so that no block of a
 *   deleted inode is cached.
 * The caller then deletes nothing until its series ends, and runs an untimed round of every tool
 * first, which fills the caches again. Returns what was done, for the benchmark's text.
 */
export function freshDisk(base: string): string {
  const done: string[] = [];
  const t = spawnSync('chattr', ['+T', base], { encoding: 'utf8' });
  done.push(t.status === 0 ? 'destinations spread over block groups (chattr +T)' : `no chattr +T (${(t.stderr || String(t.error)).trim()})`);
  spawnSync('sync');
  try {
    fs.writeFileSync('/proc/sys/vm/drop_caches', '1');
    done.push('page and buffer cache dropped');
  } catch (e) {
    done.push(`page cache not dropped (${(e as NodeJS.ErrnoException).code}: not root?)`);
  }
  return done.join(', ');
}

/**
 * Remove a generated tree. `rm -rf` rather than fs.rmSync: on trees of 100,000 files under
 * heavy load fs.rmSync was seen to return without having removed everything.
 */
export function removeTree(dir: string): void {
  spawnSync('rm', ['-rf', '--', dir], { stdio: 'ignore' });
  if (fs.existsSync(dir)) fs.rmSync(dir, { recursive: true, force: true, maxRetries: 3 });
}
