import fs from 'node:fs';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { afterEach, describe, expect, it } from 'vitest';
import { diffLive, readContents, type SnapshotMemory, takeSnapshot } from '../src/snapshot/engine.ts';
import type { HashJob } from '../src/snapshot/scan.ts';
import { silentLogger } from '../src/log.ts';
import { journalOf, loadStatCache, type Node } from '../src/snapshot/stat-cache.ts';
import { listSnapshots, readSnapshot } from '../src/snapshot/read.ts';
import { Repository, readHead } from '../src/git/repository.ts';
import { resolveAt as resolveIn } from '../src/git/history.ts';
import type { MetadataEntry } from '../src/format/entry.ts';
import { decodeDirMetadata } from '../src/format/snapshot.ts';
import { settle, snapHost, type SnapHost } from './snapshot-helpers.ts';

let hosts: SnapHost[] = [];
afterEach(() => {
  for (const h of hosts) h.cleanup();
  hosts = [];
});
function host(config: Record<string, string | number> = {}): SnapHost {
  const h = snapHost({ 'pacha.watch': '/srv/app', ...config });
  hosts.push(h);
  fs.mkdirSync(h.p('/srv/app'), { recursive: true });
  return h;
}
async function meta(h: SnapHost): Promise<Map<string, MetadataEntry>> {
  const head = await readHead(h.repo());
  const snap = await readSnapshot(h.repo(), head!);
  return new Map(snap.entries.map((e) => [e.path, e]));
}
function fsck(h: SnapHost): void {
  // throws (non-zero exit) on any problem; --strict also refuses .git names and bad modes
  execFileSync('git', ['--git-dir', h.repo(), 'fsck', '--full', '--strict', '--no-dangling'], { stdio: 'pipe' });
}

describe('takeSnapshot', () => {
  it('records every metadata field exactly, with names from the host root', async () => {
    const h = host();
    const f = h.p('/srv/app/a.conf');
    fs.writeFileSync(f, 'hello\n');
    fs.chownSync(f, 1000, 65534);
    fs.chmodSync(f, 0o640);
    fs.utimesSync(f, 1_700_000_000.5, 1_600_000_000.25);
    fs.mkdirSync(h.p('/srv/app/empty'), { mode: 0o700 });
    fs.chmodSync(h.p('/srv/app/empty'), 0o700);
    fs.symlinkSync('../nowhere/at all', h.p('/srv/app/dangling'));
    fs.writeFileSync(h.p('/srv/app/orphan'), 'x');
    fs.chownSync(h.p('/srv/app/orphan'), 4242, 4343);
    const r = await takeSnapshot(h.env2());
    expect(r.commit).toMatch(/^[0-9a-f]{40}$/);
    expect(r.summary).toMatchObject({ added: 5, changed: 0, deleted: 0, metadataOnly: 0, total: 5 });
    const m = await meta(h);
    const st = fs.lstatSync(f, { bigint: true });
    expect(m.get('srv/app/a.conf')).toEqual({
      path: 'srv/app/a.conf', type: 'file', mode: 0o640, uid: 1000, user: 'alice', gid: 65534, group: 'nogroup', mtimeNs: st.mtimeNs, size: 6,
    });
    expect(m.get('srv/app/empty')).toMatchObject({ type: 'dir', mode: 0o700, user: 'root', group: 'root', size: 0 });
    expect(m.get('srv/app/dangling')).toMatchObject({ type: 'symlink', target: '../nowhere/at all', size: 17 });
    expect(m.get('srv/app/orphan')).toMatchObject({ uid: 4242, user: '', gid: 4343, group: '' });
    expect(m.get('srv/app')).toMatchObject({ type: 'dir' });
    // the dangling symlink is a symlink in git too, and the content is there
    expect(h.git(['ls-tree', '-r', 'HEAD', 'srv/app/dangling'])).toMatch(/^120000 blob /);
    expect(h.git(['show', 'HEAD:srv/app/a.conf'])).toBe('hello\n');
    expect(h.git(['show', 'HEAD:.pacha/roots'])).toBe('/srv/app\n');
    expect(h.git(['show', 'HEAD:.pacha/format'])).toBe('pacha-snapshot 2\n');
    const msg = h.git(['log', '-1', '--format=%an <%ae>%n%B']);
    expect(msg).toContain('pacha <pacha@testhost>');
    expect(msg).toContain('5 added, 0 changed, 0 deleted, 0 metadata-only');
    expect(msg).toContain('Pacha-Host: testhost');
    fsck(h);
    // The result carries what the agent records (status.json and report.json are the agent's).
    expect(r.commit).toBe(h.git(['rev-parse', 'HEAD']).trim());
    expect(Object.keys(r.phases)).toEqual(['load', 'scan', 'hash', 'trees', 'write', 'commit']);
    expect(r.filesRead).toBeGreaterThan(0);
    expect(r.bytesWritten).toBeGreaterThan(0);
  });

  it('makes no empty commits and reads no content when nothing changed', async () => {
    const h = host();
    for (let i = 0; i < 20; i++) fs.writeFileSync(h.p(`/srv/app/f${i}`), `content ${i}\n`);
    await settle();
    const first = await takeSnapshot(h.env2());
    expect(first.summary.bytesRead).toBeGreaterThan(0);
    const second = await takeSnapshot(h.env2());
    expect(second.commit).toBeNull();
    expect(second.summary.bytesRead).toBe(0);
    expect(second.summary.total).toBe(21);
    expect(h.git(['rev-list', '--count', 'HEAD']).trim()).toBe('1');
  });

  it('a chmod-only and a chown-only change are snapshots of their own, readable in git log -p', async () => {
    const h = host();
    const f = h.p('/srv/app/x');
    fs.writeFileSync(f, 'same\n');
    await takeSnapshot(h.env2());
    fs.chmodSync(f, 0o4755);
    const a = await takeSnapshot(h.env2());
    expect(a.commit).not.toBeNull();
    expect(a.summary).toMatchObject({ added: 0, changed: 0, deleted: 0, metadataOnly: 1 });
    fs.chownSync(f, 1000, 1000);
    const b = await takeSnapshot(h.env2());
    expect(b.summary).toMatchObject({ metadataOnly: 1, changed: 0 });
    // The directory's own metadata file, nothing else, changed: a one-line diff per change.
    const patch = h.git(['log', '-p', '-2', '--', 'srv/app/.pacha']);
    expect(patch).toMatch(/^-x\tfile\t0644\troot:0\troot:0\t/m);
    expect(patch).toMatch(/^\+x\tfile\t4755\troot:0\troot:0\t/m);
    // (chown clears the setuid bit, as the kernel does)
    expect(patch).toMatch(/^\+x\tfile\t0755\talice:1000\tstaff:1000\t/m);
    // ... and the accounts, which now record the new owner.
    expect(h.git(['diff', '--stat', 'HEAD~1', 'HEAD']).trim().split('\n').map((l) => l.trim().split(' ')[0])).toEqual(['.pacha/accounts', 'srv/app/.pacha', '2']);
    expect(h.git(['diff', 'HEAD~1', 'HEAD', '--', '.pacha/accounts'])).toMatch(/^\+user\talice\t1000\t/m);
    expect((await meta(h)).get('srv/app/x')).toMatchObject({ mode: 0o755, uid: 1000, user: 'alice', gid: 1000, group: 'staff' });
    fsck(h);
  });

  it('keeps setuid 4755, sticky 1777 and 0600 exactly', async () => {
    const h = host();
    fs.writeFileSync(h.p('/srv/app/suid'), '#!/bin/sh\n');
    fs.chmodSync(h.p('/srv/app/suid'), 0o4755);
    fs.mkdirSync(h.p('/srv/app/tmp'));
    fs.chmodSync(h.p('/srv/app/tmp'), 0o1777);
    fs.writeFileSync(h.p('/srv/app/tmp/secret'), 's');
    fs.chmodSync(h.p('/srv/app/tmp/secret'), 0o600);
    fs.writeFileSync(h.p('/srv/app/sgid'), 'g');
    fs.chmodSync(h.p('/srv/app/sgid'), 0o2750);
    await takeSnapshot(h.env2());
    const m = await meta(h);
    expect(m.get('srv/app/suid')!.mode).toBe(0o4755);
    expect(m.get('srv/app/tmp')!.mode).toBe(0o1777);
    expect(m.get('srv/app/tmp/secret')!.mode).toBe(0o600);
    expect(m.get('srv/app/sgid')!.mode).toBe(0o2750);
    expect(h.git(['ls-tree', 'HEAD', 'srv/app/suid'])).toMatch(/^100755 /);
    expect(h.git(['ls-tree', 'HEAD', 'srv/app/tmp/secret'])).toMatch(/^100644 /);
  });

  it('records deletions, content changes and a missing root', async () => {
    const h = host({ 'pacha.watch': '/srv/app,/srv/gone' });
    fs.mkdirSync(h.p('/srv/gone/sub'), { recursive: true });
    fs.writeFileSync(h.p('/srv/gone/sub/f'), 'g');
    fs.writeFileSync(h.p('/srv/app/keep'), 'k1');
    fs.writeFileSync(h.p('/srv/app/del'), 'd');
    await takeSnapshot(h.env2());
    fs.rmSync(h.p('/srv/app/del'));
    fs.writeFileSync(h.p('/srv/app/keep'), 'k2 longer');
    fs.rmSync(h.p('/srv/gone'), { recursive: true });
    const r = await takeSnapshot(h.env2());
    expect(r.summary).toMatchObject({ deleted: 4, changed: 1 });
    expect(r.warnings.join('\n')).toContain('watched path /srv/gone does not exist');
    const m = await meta(h);
    expect(m.has('srv/app/del')).toBe(false);
    expect(m.has('srv/gone/sub/f')).toBe(false);
    expect(h.git(['show', 'HEAD:srv/app/keep'])).toBe('k2 longer');
    expect(h.git(['show', 'HEAD:.pacha/roots'])).toBe('/srv/app\n/srv/gone\n');
    fsck(h);
  });

  it('two watched directories with the same basename do not collide', async () => {
    const h = host({ 'pacha.watch': '/etc/nginx,/opt/site/nginx,/etc/hosts' });
    fs.writeFileSync(h.p('/etc/hosts'), '127.0.0.1 localhost\n');
    fs.mkdirSync(h.p('/etc/nginx'), { recursive: true });
    fs.mkdirSync(h.p('/opt/site/nginx'), { recursive: true });
    fs.writeFileSync(h.p('/etc/nginx/nginx.conf'), 'etc');
    fs.writeFileSync(h.p('/opt/site/nginx/nginx.conf'), 'opt');
    await takeSnapshot(h.env2());
    expect(h.git(['show', 'HEAD:etc/nginx/nginx.conf'])).toBe('etc');
    expect(h.git(['show', 'HEAD:opt/site/nginx/nginx.conf'])).toBe('opt');
    // a single watched file
    expect(h.git(['show', 'HEAD:etc/hosts'])).toBe('127.0.0.1 localhost\n');
    const m = await meta(h);
    // the directories leading to a root are not part of the snapshot
    expect(m.has('etc')).toBe(false);
    expect(m.has('opt/site')).toBe(false);
    expect(m.has('etc/nginx')).toBe(true);
  });

  it('names with spaces, newlines, tabs, backslashes, UTF-8 and .git survive; fsck stays clean', async () => {
    const h = host();
    const names = ['with space', 'new\nline', 'tab\there', 'back\\slash', 'ünïcødé ✓', '日本語', '.gitmodules', '.gitattributes', 'GIT~1', '.pacha-name-00'];
    for (const n of names) fs.writeFileSync(h.p(`/srv/app/${n}`), `content of ${n}`);
    fs.mkdirSync(h.p('/srv/app/repo/.git/refs'), { recursive: true });
    fs.writeFileSync(h.p('/srv/app/repo/.git/HEAD'), 'ref: refs/heads/main\n');
    fs.mkdirSync(h.p('/srv/app/.GIT'));
    fs.writeFileSync(h.p('/srv/app/.GIT/config'), '[core]\n');
    await takeSnapshot(h.env2());
    fsck(h);
    const snap = await readSnapshot(h.repo(), (await readHead(h.repo()))!);
    const paths = new Set(snap.entries.map((e) => e.path));
    for (const n of names) {
      expect(paths.has(`srv/app/${n}`)).toBe(true);
      expect((await snap.readBlob(`srv/app/${n}`)).toString()).toBe(`content of ${n}`);
    }
    expect((await snap.readBlob('srv/app/repo/.git/HEAD')).toString()).toBe('ref: refs/heads/main\n');
    expect(paths.has('srv/app/repo/.git/refs')).toBe(true);
    expect((await snap.readBlob('srv/app/.GIT/config')).toString()).toBe('[core]\n');
    // one line per path: the newline in a name is escaped
    const text = h.git(['show', 'HEAD:srv/app/.pacha']);
    const inApp = snap.entries.filter((e) => e.path === 'srv/app' || (/^srv\/app\/[^/]+$/.test(e.path) && e.type !== 'dir'));
    expect(text.split('\n').filter(Boolean)).toHaveLength(inApp.length);
    expect(text).toContain('new\\nline\tfile');
    expect(decodeDirMetadata('srv/app', text, 'srv/app/.pacha').map((e) => e.path)).toEqual(inApp.map((e) => e.path));
  });

  it('skips a name that is not valid UTF-8 with a warning', async () => {
    const h = host();
    const dir = Buffer.from(h.p('/srv/app/'));
    fs.writeFileSync(Buffer.concat([dir, Buffer.from([0x66, 0xff, 0x66])]), 'latin');
    fs.writeFileSync(h.p('/srv/app/ok'), 'ok');
    const r = await takeSnapshot(h.env2());
    expect(r.warnings.join('\n')).toMatch(/skipped \/srv\/app\/f.f: its name is not valid UTF-8/);
    expect([...(await meta(h)).keys()].sort()).toEqual(['srv/app', 'srv/app/ok']);
    fsck(h);
  });

  it('skips fifos, ignored names and files over the size limit with warnings', async () => {
    const h = host({ 'pacha.ignore': '*.swp,/srv/app/cache/*', 'pacha.max_file_size': '1KiB' });
    execFileSync('mkfifo', [h.p('/srv/app/pipe')]);
    fs.writeFileSync(h.p('/srv/app/.a.conf.swp'), 'swap');
    fs.mkdirSync(h.p('/srv/app/cache'));
    fs.writeFileSync(h.p('/srv/app/cache/blob'), 'c');
    fs.writeFileSync(h.p('/srv/app/big'), Buffer.alloc(2048, 1));
    fs.writeFileSync(h.p('/srv/app/small'), 'ok');
    const r = await takeSnapshot(h.env2());
    const w = r.warnings.join('\n');
    expect(w).toMatch(/skipped \/srv\/app\/pipe: a fifo/);
    expect(w).toMatch(/skipped \/srv\/app\/big: 2048 bytes is over pacha.max_file_size/);
    const m = await meta(h);
    expect([...m.keys()].sort()).toEqual(['srv/app', 'srv/app/cache', 'srv/app/small']);
  });

  it('streams a large file into its own pack and reads it back', async () => {
    const h = host();
    const big = Buffer.alloc(6 * 1024 * 1024);
    for (let i = 0; i < big.length; i += 4096) big.writeUInt32LE(i * 2654435761 >>> 0, i);
    fs.writeFileSync(h.p('/srv/app/big.bin'), big);
    fs.writeFileSync(h.p('/srv/app/small'), 's');
    const r = await takeSnapshot(h.env2());
    expect(r.summary.bytesRead).toBe(big.length + 1);
    const packs = fs.readdirSync(path.join(h.repo(), 'objects/pack')).filter((f) => f.endsWith('.pack'));
    expect(packs).toHaveLength(2);
    fsck(h);
    const snap = await readSnapshot(h.repo(), r.commit!);
    const out = path.join(h.root, 'out.bin');
    expect(await snap.writeBlobTo('srv/app/big.bin', out)).toBe(big.length);
    expect(fs.readFileSync(out).equals(big)).toBe(true);
  });

  it('a snapshot of many megabytes (deflated on the worker thread, large files streamed alongside) is read back whole; fsck clean', async () => {
    const h = host();
    // Over the engine's 8 MiB of whole files for the deflate worker: 600 files of 16 KiB.
    const files = new Map<string, Buffer>();
    for (let i = 0; i < 600; i++) files.set(`/srv/app/d${i % 7}/f${i}.conf`, Buffer.from(`key${i} = ${'v'.repeat(i % 50)}\n`.repeat(2000)).subarray(0, 16 * 1024));
    // And files over 4 MiB among them, streamed into their own pack while the small ones are read.
    for (const d of [1, 4]) files.set(`/srv/app/d${d}/big${d}.txt`, Buffer.from(`big ${d} line\n`.repeat(400_000)));
    for (const [p, data] of files) {
      fs.mkdirSync(path.dirname(h.p(p)), { recursive: true });
      fs.writeFileSync(h.p(p), data);
    }
    const r = await takeSnapshot(h.env2());
    expect(r.summary.added).toBe(files.size + 8);
    expect(fs.readdirSync(path.join(h.repo(), 'objects/pack')).filter((f) => f.endsWith('.pack'))).toHaveLength(2);
    fsck(h);
    const snap = await readSnapshot(h.repo(), r.commit!);
    const out = path.join(h.root, 'out');
    for (const [p, data] of files) {
      expect(await snap.writeBlobTo(p.slice(1), out)).toBe(data.length);
      expect(fs.readFileSync(out).equals(data)).toBe(true);
    }
  });

  it('a dirty scan sees only what the watcher reported, deletions included', async () => {
    const h = host();
    fs.mkdirSync(h.p('/srv/app/a/b'), { recursive: true });
    fs.writeFileSync(h.p('/srv/app/a/b/one'), '1');
    fs.writeFileSync(h.p('/srv/app/a/two'), '2');
    fs.writeFileSync(h.p('/srv/app/three'), '3');
    await takeSnapshot(h.env2());
    fs.writeFileSync(h.p('/srv/app/a/b/one'), '1 changed');
    fs.writeFileSync(h.p('/srv/app/three'), '3 changed, not reported');
    fs.rmSync(h.p('/srv/app/a/two'));
    fs.mkdirSync(h.p('/srv/app/a/new'));
    fs.writeFileSync(h.p('/srv/app/a/new/n'), 'n');
    const r = await takeSnapshot(h.env2(), { dirty: ['/srv/app/a/b/one', '/srv/app/a'] });
    expect(r.summary).toMatchObject({ changed: 1, deleted: 1, added: 2 });
    expect(h.git(['show', 'HEAD:srv/app/a/b/one'])).toBe('1 changed');
    expect(h.git(['show', 'HEAD:srv/app/three'])).toBe('3');
    // the full reconcile scan catches what the watcher missed
    const full = await takeSnapshot(h.env2());
    expect(full.summary).toMatchObject({ changed: 1, added: 0, deleted: 0 });
    expect(h.git(['show', 'HEAD:srv/app/three'])).toBe('3 changed, not reported');
    fsck(h);
  });

  it('rebuilds its knowledge from the repository when the stat cache is lost', async () => {
    const h = host();
    fs.writeFileSync(h.p('/srv/app/f'), 'f');
    await takeSnapshot(h.env2());
    fs.rmSync(h.env2().state.statCache);
    const again = await takeSnapshot(h.env2());
    expect(again.commit).toBeNull();
    fs.writeFileSync(h.p('/srv/app/f'), 'changed');
    fs.writeFileSync(h.env2().state.statCache, 'garbage\n');
    const r = await takeSnapshot(h.env2());
    expect(r.summary).toMatchObject({ changed: 1, added: 0, deleted: 0 });
  });
});

describe('readContents', () => {
  it('waits for the files read alongside, each chain in job order', async () => {
    const job = (name: string, size: number): HashJob => ({
      node: { path: name, type: 'file', line: '', sig: null, oid: '' },
      local: `/nowhere/${name}`,
      entry: { path: name, type: 'file', mode: 0o644, uid: 0, user: 'root', gid: 0, group: 'root', mtimeNs: 0n, size },
    });
    // Large files first and last: the last one is still being read when the loop ends.
    const jobs = [job('big0', 100), ...Array.from({ length: 300 }, (_, i) => job(`f${i}`, 1)), job('big1', 100), job('big2', 100)];
    const started: string[] = [];
    const events: string[] = [];
    const store = async (j: HashJob) => {
      started.push(j.node.path);
      events.push(`start ${j.node.path}`);
      if (j.entry.size > 1) await new Promise((resolve) => setTimeout(resolve, 20));
      events.push(`end ${j.node.path}`);
      return { oid: `oid-${j.node.path}`, size: j.entry.size, bytesRead: j.entry.size };
    };
    const read = await readContents(jobs, silentLogger, store, () => expect.unreachable(), (j) => j.entry.size > 1);
    expect(read).toBe(300 + 3 * 100);
    for (const j of jobs) expect(j.node.oid).toBe(`oid-${j.node.path}`);
    expect(started.filter((n) => n.startsWith('big'))).toEqual(['big0', 'big1', 'big2']);
    // The small files did not wait for the first large one.
    expect(events.indexOf('start f0')).toBeLessThan(events.indexOf('end big0'));
  });
});

describe('incremental snapshots agree with a scan from scratch', () => {
  it('after random changes, reported as dirty paths or found by the full scan', async () => {
    const h = host();
    let seed = 42;
    const rnd = (n: number) => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed % n;
    };
    const dirs = ['', '/a', '/a/b', '/c'];
    for (const d of dirs) fs.mkdirSync(h.p('/srv/app' + d), { recursive: true });
    await takeSnapshot(h.env2());
    for (let round = 0; round < 12; round++) {
      const dirty: string[] = [];
      for (let k = 0; k < 6; k++) {
        const d = dirs[rnd(dirs.length)];
        const name = `/srv/app${d}/n${rnd(5)}`;
        const local = h.p(name);
        const st = fs.lstatSync(local, { throwIfNoEntry: false });
        const op = rnd(5);
        if (st?.isDirectory()) fs.rmSync(local, { recursive: true });
        else if (op === 0 && st) fs.rmSync(local);
        else if (op === 1) {
          fs.rmSync(local, { force: true });
          fs.symlinkSync(`target-${rnd(3)}`, local);
        } else if (op === 2 && st?.isFile()) fs.chmodSync(local, rnd(2) ? 0o600 : 0o755);
        else if (op === 3) {
          fs.rmSync(local, { force: true });
          fs.mkdirSync(local);
          fs.writeFileSync(local + '/inner', `inner ${round}`);
        } else {
          if (st?.isSymbolicLink()) fs.rmSync(local);
          fs.writeFileSync(local, `round ${round} ${rnd(1000)}`);
        }
        dirty.push(name, path.posix.dirname(name));
      }
      const useDirty = round % 2 === 0;
      await takeSnapshot(h.env2(), useDirty ? { dirty } : {});
      // what the cache-driven snapshot recorded must equal a scan that trusts nothing
      const cache = h.env2().state.statCache;
      fs.copyFileSync(cache, cache + '.keep');
      fs.rmSync(cache);
      const check = await takeSnapshot(h.env2());
      expect(check.commit, `round ${round} (${useDirty ? 'dirty' : 'full'})`).toBeNull();
      fs.renameSync(cache + '.keep', cache);
    }
    fsck(h);
  });
});

describe('the stat cache kept in memory (the daemon) and its journal', () => {
  const rows = (nodes: Node[]) => nodes.map((n) => [n.path, n.type, n.line, n.sig, n.oid]);

  it('a few changes are appended to the journal; the file and journal, the memory and a scan from scratch agree', async () => {
    const h = host();
    const memory: SnapshotMemory = { cache: null };
    const env = () => ({ ...h.env2(), memory });
    for (const d of ['a', 'a/b', 'c']) fs.mkdirSync(h.p(`/srv/app/${d}`), { recursive: true });
    for (let i = 0; i < 30; i++) fs.writeFileSync(h.p(`/srv/app/${['a', 'a/b', 'c'][i % 3]}/f${i}`), `file ${i}\n`);
    const first = await takeSnapshot(env());
    // Written whole: the file is read back (its records take less memory than the scan's nodes).
    expect(memory.cache!.commit).toBe(first.commit);
    expect(memory.cache!.saved).toEqual({ baseBytes: fs.statSync(h.env2().state.statCache).size, journalBytes: 0 });
    await settle();
    // The first snapshot's records are racy: this one records their signatures.
    await takeSnapshot(env());
    const file = h.env2().state.statCache;
    const whole = fs.readFileSync(file);
    const journalLines = () => (fs.existsSync(journalOf(file)) ? fs.readFileSync(journalOf(file), 'utf8').split('\n').length - 1 : 0);
    const linesBefore = journalLines();
    const steps: [string[], () => void][] = [
      [['/srv/app/a/f0'], () => fs.appendFileSync(h.p('/srv/app/a/f0'), 'more\n')],
      [['/srv/app/c/new', '/srv/app/c'], () => fs.writeFileSync(h.p('/srv/app/c/new'), 'new\n')],
      [['/srv/app/a/b', '/srv/app/a'], () => fs.rmSync(h.p('/srv/app/a/b'), { recursive: true })],
      [['/srv/app/c/f2'], () => fs.chmodSync(h.p('/srv/app/c/f2'), 0o600)],
      [['/srv/app/a/b', '/srv/app/a'], () => fs.mkdirSync(h.p('/srv/app/a/b'))],
      [[], () => fs.symlinkSync('f0', h.p('/srv/app/a/l'))], // found by the full scan
    ];
    for (const [dirty, change] of steps) {
      change();
      await settle();
      const r = await takeSnapshot(env(), dirty.length > 0 ? { dirty } : {});
      expect(r.commit).not.toBeNull();
      expect(memory.cache!.commit).toBe(r.commit);
      expect(rows(memory.cache!.nodes)).toEqual(rows(loadStatCache(file)!.nodes));
      expect([...memory.cache!.byPath.keys()].sort()).toEqual(memory.cache!.nodes.map((n) => n.path).sort());
    }
    expect(fs.readFileSync(file).equals(whole)).toBe(true);
    expect(journalLines()).toBe(linesBefore + steps.length);
    // A snapshot that fails leaves no cache in memory: the next one reads the files.
    const packDir = path.join(h.repo(), 'objects', 'pack');
    fs.renameSync(packDir, packDir + '.away');
    fs.writeFileSync(packDir, '');
    fs.writeFileSync(h.p('/srv/app/c/f5'), 'changed\n');
    await expect(takeSnapshot(env(), { dirty: ['/srv/app/c/f5'] })).rejects.toThrow();
    expect(memory.cache).toBeNull();
    fs.rmSync(packDir);
    fs.renameSync(packDir + '.away', packDir);
    await settle();
    expect((await takeSnapshot(env(), { dirty: ['/srv/app/c/f5'] })).summary).toMatchObject({ changed: 1 });
    // What the journal and the memory built is what a snapshot without a cache builds.
    fs.rmSync(file);
    expect((await takeSnapshot(h.env2())).commit).toBeNull();
    expect(fs.existsSync(journalOf(file))).toBe(false);
    fsck(h);
  });
});

describe('reading snapshots', () => {
  it('lists, resolves by id and by time, and diffs live files', async () => {
    const h = host();
    fs.writeFileSync(h.p('/srv/app/a'), 'a');
    const c1 = (await takeSnapshot(h.env2(), { message: 'first one' })).commit!;
    fs.writeFileSync(h.p('/srv/app/b'), 'b');
    const c2 = (await takeSnapshot(h.env2())).commit!;
    const list = await listSnapshots(h.repo());
    expect(list.map((s) => s.commit)).toEqual([c2, c1]);
    expect(list[1].summary).toEqual({ added: 2, changed: 0, deleted: 0, metadataOnly: 0 });
    expect(list[1].message).toContain('first one');
    expect(list[0].host).toBe('testhost');
    expect(await listSnapshots(h.repo(), 1)).toHaveLength(1);
    const resolveAt = async (repoDir: string, at: string) => resolveIn(new Repository(repoDir), c2, at);
    expect(await resolveAt(h.repo(), c1.slice(0, 8))).toBe(c1);
    expect(await resolveAt(h.repo(), new Date(Date.now() + 60_000).toISOString())).toBe(c2);
    await expect(resolveAt(h.repo(), '2001-01-01T00:00:00Z')).rejects.toThrow(/no snapshot at or before/);
    await expect(resolveAt(h.repo(), 'yesterday-ish')).rejects.toThrow(/accepted: a commit id/);
    const snap = await readSnapshot(h.repo(), c1);
    expect(snap.parent).toBeNull();
    expect(snap.roots).toEqual(['/srv/app']);
    expect(await snap.blobId('srv/app/b')).toBeNull();

    const cache = fs.readFileSync(h.env2().state.statCache);
    fs.rmSync(h.p('/srv/app/a'));
    fs.chmodSync(h.p('/srv/app/b'), 0o600);
    fs.symlinkSync('b', h.p('/srv/app/l'));
    const d = await diffLive(h.env2());
    expect(d.base).toBe(c2);
    expect(d.changes.map((c) => [c.path, c.kind, c.details.filter((x) => x !== 'mtime')])).toEqual([
      ['srv/app', 'metadata', []],
      ['srv/app/a', 'deleted', []],
      ['srv/app/b', 'metadata', ['mode']],
      ['srv/app/l', 'added', []],
    ]);
    // diff changes nothing
    expect(fs.readFileSync(h.env2().state.statCache).equals(cache)).toBe(true);
    expect(await readHead(h.repo())).toBe(c2);
  });
});
