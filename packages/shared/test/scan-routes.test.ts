import fs from 'node:fs';
import { execFileSync } from 'node:child_process';
import { afterEach, describe, expect, it } from 'vitest';
import { takeSnapshot, type SnapshotResult } from '../src/snapshot/engine.ts';
import { readHead, updateHead } from '../src/git/repository.ts';
import { loadStatCache } from '../src/snapshot/stat-cache.ts';
import { settle, snapHost, type SnapHost } from './snapshot-helpers.ts';

// A snapshot made incrementally (the stat cache tells unchanged paths, only changed
// directories' trees and metadata are built again) must give exactly what one made from
// scratch gives (no stat cache: every file read, the previous snapshot read from its commit):
// each case takes a snapshot both ways from the same starting point and compares the trees,
// the summaries and the stat caches written.

let hosts: SnapHost[] = [];
afterEach(() => {
  for (const h of hosts) h.cleanup();
  hosts = [];
});

function host(config: Record<string, string | number> = {}): SnapHost {
  const h = snapHost({ 'pacha.watch': '/srv/app,/etc/motd', ...config });
  hosts.push(h);
  fs.mkdirSync(h.p('/srv/app/conf.d'), { recursive: true });
  fs.mkdirSync(h.p('/srv/app/lib/deep/er'), { recursive: true });
  fs.writeFileSync(h.p('/etc/motd'), 'welcome\n');
  for (let i = 0; i < 20; i++) fs.writeFileSync(h.p(`/srv/app/conf.d/${i}.conf`), `setting ${i}\n`);
  fs.writeFileSync(h.p('/srv/app/lib/deep/er/data.bin'), Buffer.alloc(3000, 7));
  // Names that sort between a directory and its children ('-' and '.' come before '/').
  fs.writeFileSync(h.p('/srv/app/lib/deep-x'), 'x');
  fs.mkdirSync(h.p('/srv/app/lib/deep.d'));
  fs.writeFileSync(h.p('/srv/app/lib/deep.d/y'), 'y');
  fs.writeFileSync(h.p('/srv/app/tab\there'), 'tab\n');
  fs.writeFileSync(h.p('/srv/app/.gitmodules'), 'encoded in the tree\n');
  fs.writeFileSync(h.p('/srv/app/café ☕.conf'), 'utf-8\n');
  fs.writeFileSync(h.p('/srv/app/run.sh'), '#!/bin/sh\n');
  fs.symlinkSync('conf.d/1.conf', h.p('/srv/app/link'));
  fs.mkdirSync(h.p('/srv/app/empty'));
  return h;
}

function tree(h: SnapHost, commit: string): string {
  return h.git(['rev-parse', `${commit}^{tree}`]).trim();
}

function cacheRows(h: SnapHost): unknown[][] {
  const c = loadStatCache(h.env2().state.statCache)!;
  return c.nodes.map((n) => [n.path, n.type, n.line, n.sig, n.oid]);
}

/** The snapshot after `change`, taken incrementally and from scratch from the same start; both results. */
async function bothWays(h: SnapHost, change: () => void): Promise<{ incremental: SnapshotResult; scratch: SnapshotResult }> {
  const env = h.env2();
  await settle();
  expect((await takeSnapshot(env)).commit).toBeNull(); // a settled start: nothing racy left
  const start = (await readHead(env.state.repo))!;
  change();
  await settle();
  const incremental = await takeSnapshot(env);
  const incTree = incremental.commit ? tree(h, incremental.commit) : null;
  const incCache = cacheRows(h);
  updateHead(env.state.repo, start);
  fs.rmSync(env.state.statCache);
  const scratch = await takeSnapshot(env);
  expect(scratch.summary.bytesRead).toBeGreaterThan(incremental.summary.bytesRead);
  expect(incremental.commit === null).toBe(scratch.commit === null);
  if (scratch.commit) expect(incTree).toBe(tree(h, scratch.commit));
  expect(incremental.summary).toEqual({ ...scratch.summary, bytesRead: incremental.summary.bytesRead });
  expect(incCache).toEqual(cacheRows(h));
  execFileSync('git', ['--git-dir', env.state.repo, 'fsck', '--full', '--strict', '--no-dangling'], { stdio: 'pipe' });
  return { incremental, scratch };
}

/** What the incremental snapshots built (trees, metadata) is what a snapshot without a cache builds. */
async function fromScratchAgrees(h: SnapHost): Promise<void> {
  const env = h.env2();
  fs.rmSync(env.state.statCache);
  await settle();
  expect(await takeSnapshot(env)).toMatchObject({ commit: null, route: 'full' });
}

describe('one scan route: incremental and from scratch agree', () => {
  it('records content, mode and mtime changes', async () => {
    const h = host();
    await takeSnapshot(h.env2());
    const cases: [string, () => void, Partial<SnapshotResult['summary']>][] = [
      ['content', () => fs.appendFileSync(h.p('/srv/app/conf.d/7.conf'), 'more\n'), { changed: 1 }],
      ['x bit', () => fs.chmodSync(h.p('/srv/app/run.sh'), 0o755), { metadataOnly: 1 }],
      ['mode', () => fs.chmodSync(h.p('/srv/app/conf.d/3.conf'), 0o600), { metadataOnly: 1 }],
      ['owner', () => fs.chownSync(h.p('/srv/app/conf.d/4.conf'), 1000, 1000), { metadataOnly: 1 }],
      ['mtime', () => fs.utimesSync(h.p('/srv/app/conf.d/5.conf'), 1_600_000_000, 1_600_000_000), { metadataOnly: 1 }],
      ['deep', () => fs.writeFileSync(h.p('/srv/app/lib/deep/er/data.bin'), Buffer.alloc(3000, 8)), { changed: 1 }],
      ['a file root', () => fs.writeFileSync(h.p('/etc/motd'), 'goodbye\n'), { changed: 1 }],
      ['a UTF-8 name', () => fs.appendFileSync(h.p('/srv/app/café ☕.conf'), 'more\n'), { changed: 1 }],
      ['escaped names', () => {
        fs.appendFileSync(h.p('/srv/app/tab\there'), 'x');
        fs.appendFileSync(h.p('/srv/app/.gitmodules'), 'x');
      }, { changed: 2 }],
      ['several at once', () => {
        fs.appendFileSync(h.p('/srv/app/conf.d/1.conf'), 'a');
        fs.chmodSync(h.p('/srv/app/conf.d/2.conf'), 0o700);
        fs.appendFileSync(h.p('/etc/motd'), 'b');
      }, { changed: 2, metadataOnly: 1 }],
      ['the same content written again', () => fs.writeFileSync(h.p('/srv/app/conf.d/9.conf'), 'setting 9\n'), { changed: 0 }],
      // What editors and configuration tools do: write a new file, rename it over the old one.
      // The directory changed, but it holds the same names.
      ['an atomic write', () => {
        fs.writeFileSync(h.p('/srv/app/conf.d/.13.conf.tmp'), 'replaced\n');
        fs.renameSync(h.p('/srv/app/conf.d/.13.conf.tmp'), h.p('/srv/app/conf.d/13.conf'));
      }, { changed: 1, metadataOnly: 1 }],
      ['an editor swap file left behind (ignored)', () => fs.writeFileSync(h.p('/srv/app/conf.d/.14.conf.swp'), 'swap'), { changed: 0, metadataOnly: 1 }],
      ['a directory chmod', () => fs.chmodSync(h.p('/srv/app/empty'), 0o700), { metadataOnly: 1 }],
      ['a directory with look-alike names, chmod', () => fs.chmodSync(h.p('/srv/app/lib'), 0o750), { metadataOnly: 1 }],
    ];
    for (const [name, change, summary] of cases) {
      const { incremental } = await bothWays(h, change);
      expect({ name, route: incremental.route }).toEqual({ name, route: 'full' });
      expect({ name, summary: incremental.summary }).toMatchObject({ name, summary });
    }
    await fromScratchAgrees(h);
  });

  it('records a change of paths or a symlink', async () => {
    const h = host();
    await takeSnapshot(h.env2());
    const cases: [string, () => void][] = [
      ['a file added', () => fs.writeFileSync(h.p('/srv/app/conf.d/new.conf'), 'new\n')],
      ['a file removed', () => fs.rmSync(h.p('/srv/app/conf.d/0.conf'))],
      ['a file renamed over another', () => fs.renameSync(h.p('/srv/app/conf.d/10.conf'), h.p('/srv/app/conf.d/11.conf'))],
      ['a symlink retargeted', () => {
        fs.rmSync(h.p('/srv/app/link'));
        fs.symlinkSync('conf.d/2.conf', h.p('/srv/app/link'));
      }],
      ['a file made a directory', () => {
        fs.rmSync(h.p('/srv/app/conf.d/12.conf'));
        fs.mkdirSync(h.p('/srv/app/conf.d/12.conf'));
      }],
      ['a watched file root removed', () => fs.rmSync(h.p('/etc/motd'))],
      ['a watched file root back', () => fs.writeFileSync(h.p('/etc/motd'), 'back\n')],
    ];
    for (const [name, change] of cases) {
      const { incremental } = await bothWays(h, change);
      expect({ name, committed: incremental.commit !== null }).toEqual({ name, committed: true });
    }
    await fromScratchAgrees(h);
  });

  it('sees nothing changed without a commit, and takes a racily clean file up again', async () => {
    const h = host();
    const env = h.env2();
    // The files were just written: within the clock tick of the first snapshot they would be
    // racy there, and read again (bytesRead > 0) by the calm one below.
    await settle();
    await takeSnapshot(env);
    await settle();
    const calm = await takeSnapshot(env);
    expect(calm).toMatchObject({ commit: null, route: 'full', summary: { changed: 0, metadataOnly: 0, bytesRead: 0 } });
    // Changed and snapshotted within one clock tick: stored without a signature, so the next
    // snapshot reads it again and finds it unchanged.
    fs.appendFileSync(h.p('/srv/app/conf.d/8.conf'), 'racy\n');
    const r = await takeSnapshot(env);
    expect(r.summary.changed).toBe(1);
    await settle();
    const again = await takeSnapshot(env);
    expect(again.commit).toBeNull();
    expect(h.git(['show', 'HEAD:srv/app/conf.d/8.conf'])).toBe('setting 8\nracy\n');
  });

  it('finds a file that was skipped as too large once it shrinks in place', async () => {
    const h = host({ 'pacha.max_file_size': 100 });
    const big = h.p('/srv/app/conf.d/big.conf');
    fs.writeFileSync(big, 'x'.repeat(200));
    const env = h.env2();
    const first = await takeSnapshot(env);
    expect(first.warnings.join('\n')).toMatch(/skipped \/srv\/app\/conf\.d\/big\.conf: 200 bytes is over/);
    await settle();
    // The directory holding a skipped name is listed every time (its name could become one to keep).
    expect((await takeSnapshot(env)).route).toBe('full');
    fs.truncateSync(big, 10); // the directory's mtime does not move
    const r = await takeSnapshot(env);
    expect(r.summary.added).toBe(1);
    expect(h.git(['show', 'HEAD:srv/app/conf.d/big.conf'])).toBe('x'.repeat(10));
  });
});
