import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { commitSnapshot, git, initBareRepo, packRepo } from '@pacha/test-support/git-fixture';
import { craftPack, placePack } from '@pacha/test-support/craft-pack';
import { silentLogger, type Logger } from '../src/log.ts';
import { BlobSource, checkedBudget } from '../src/rebuild/blob-source.ts';
import { appendRun, hookStatus, readJournal, type HookRun } from '../src/rebuild/journal.ts';
import { loadAccounts as loadIdTable } from '../src/accounts.ts';
import { ownerResolver } from '../src/rebuild/owners.ts';
import { holdsBlob } from '../src/rebuild/plan.ts';
import { seconds } from '../src/rebuild/restore.ts';
import { badPathReason } from '../src/rebuild/validate.ts';
import { verifyRestored } from '../src/rebuild/verify.ts';
import type { RestoreItem } from '../src/rebuild/validate.ts';

// The rebuild's parts on their own: path checks, owner resolution, the hook journal, reading
// blobs out of packs (whole and delta), content ids and --verify.

const dirs: string[] = [];
const tmp = () => {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'pacha-rbparts-'));
  dirs.push(d);
  return d;
};
afterEach(() => {
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});

function captureLog(): Logger & { warnings: string[] } {
  const warnings: string[] = [];
  return { ...silentLogger, warnings, warn: (m: string) => warnings.push(m) };
}

describe('badPathReason', () => {
  it.each([
    ['etc/app.conf', null],
    ['etc/with space/é', null],
    ['', 'empty path'],
    ['/etc/passwd', 'absolute path (metadata paths have no leading slash)'],
    ['etc//x', 'empty path component'],
    ['etc/../root', '".." component'],
    ['./etc', '"." component'],
    ['etc/a\0b', 'contains a NUL byte'],
  ])('%j -> %j', (p, want) => {
    expect(badPathReason(p)).toBe(want);
  });
});

describe('owners by name on the rebuilt host', () => {
  it('uses the names of the root dir, falls back to the recorded id with one warning per name', () => {
    const root = tmp();
    fs.mkdirSync(path.join(root, 'etc'));
    fs.writeFileSync(path.join(root, 'etc/passwd'), '# comment\nroot:x:0:0::/root:/bin/sh\nwww:x:33:33::/var/www:/bin/false\nbroken line\n');
    fs.writeFileSync(path.join(root, 'etc/group'), 'root:x:0:\nwww:x:33:\n');
    const r = ownerResolver(loadIdTable(root), root);
    expect(r.uid('www', 1000, '/srv/a')).toBe(33);
    expect(r.gid('www', 1000, '/srv/a')).toBe(33);
    expect(r.uid('ghost', 4321, '/srv/b')).toBe(4321);
    expect(r.uid('ghost', 4321, '/srv/c')).toBe(4321);
    expect(r.gid('', 77, '/srv/d')).toBe(77);
    const log = captureLog();
    r.reportMissing(log);
    expect(log.warnings).toHaveLength(1);
    expect(log.warnings[0]).toBe(`user "ghost" does not exist in ${root}/etc/passwd: /srv/b, /srv/c get the recorded numeric uid 4321 (create the user in a pacha_pre hook to fix this)`);
  });
});

describe('hook journal', () => {
  it('a hook is applied only when its last run with the same content succeeded', () => {
    const dir = tmp();
    const run = (over: Partial<HookRun>): HookRun => ({ name: '10-a', phase: 'pre', sha256: 'aa', commit: 'c', start: '', end: '', exitCode: 0, signal: null, timedOut: false, ok: true, outputTail: '', ...over });
    appendRun(dir, 'h', run({ ok: false, exitCode: 1 }));
    expect(hookStatus(readJournal(dir, 'h'), 'pre', '10-a', 'aa').status).toBe('failed');
    appendRun(dir, 'h', run({}));
    expect(hookStatus(readJournal(dir, 'h'), 'pre', '10-a', 'aa').status).toBe('applied');
    expect(hookStatus(readJournal(dir, 'h'), 'pre', '10-a', 'bb').status).toBe('pending');
    expect(hookStatus(readJournal(dir, 'h'), 'post', '10-a', 'aa').status).toBe('pending');
    expect(fs.statSync(path.join(dir, 'h.json')).mode & 0o777).toBe(0o600);
  });
});

describe('BlobSource', () => {
  it('reads whole and delta blobs from packs and loose objects, checking their ids', async () => {
    const repo = path.join(tmp(), 'repo');
    initBareRepo(repo);
    const big = Array.from({ length: 2000 }, (_, i) => `line ${i} of a configuration file\n`).join('');
    commitSnapshot(repo, { roots: ['/etc/x'], entries: [{ path: '/etc/x', type: 'dir' }, { path: '/etc/x/a', type: 'file', content: big }] });
    commitSnapshot(repo, { roots: ['/etc/x'], entries: [{ path: '/etc/x', type: 'dir' }, { path: '/etc/x/a', type: 'file', content: big + 'one more line\n' }] });
    execFileSync('git', ['--git-dir', repo, 'repack', '-a', '-d', '-f', '-q', '--window=10', '--depth=10']);
    const ids = ['main~1:etc/x/a', 'main:etc/x/a'].map((r) => git(repo, ['rev-parse', r]).trim());
    const types = git(repo, ['verify-pack', '-v', ...fs.readdirSync(path.join(repo, 'objects/pack')).filter((f) => f.endsWith('.idx')).map((f) => path.join(repo, 'objects/pack', f))]);
    // One of the two versions is stored as a delta of the other.
    expect(ids.some((id) => new RegExp(`^${id} blob\\s+\\d+ \\d+ \\d+ \\d+ [0-9a-f]{40}`, 'm').test(types))).toBe(true);
    const src = new BlobSource(repo);
    try {
      expect((await src.readAny(ids[0])).toString()).toBe(big);
      expect((await src.readAny(ids[1])).toString()).toBe(big + 'one more line\n');
      const out = path.join(tmp(), 'out');
      const fd = fs.openSync(out, 'w');
      expect(await src.writeTo(ids[1], fd)).toBe(big.length + 14);
      fs.closeSync(fd);
      expect(fs.readFileSync(out, 'utf8')).toBe(big + 'one more line\n');
      expect(src.has(ids[0])).toBe(true);
      expect(src.has('0'.repeat(40))).toBe(false);
    } finally {
      src.close();
    }
  });

  it('refuses a corrupt pack entry', () => {
    const repo = path.join(tmp(), 'repo');
    initBareRepo(repo);
    commitSnapshot(repo, { roots: ['/etc/x'], entries: [{ path: '/etc/x', type: 'dir' }, { path: '/etc/x/a', type: 'file', content: 'x'.repeat(5000) }] });
    packRepo(repo);
    const id = git(repo, ['rev-parse', 'main:etc/x/a']).trim();
    const pack = fs.readdirSync(path.join(repo, 'objects/pack')).find((f) => f.endsWith('.pack'))!;
    const file = path.join(repo, 'objects/pack', pack);
    const src0 = new BlobSource(repo);
    expect(src0.tryRead(id, 5000)!.length).toBe(5000);
    src0.close();
    // Flip bytes inside the compressed data of that blob: inflate fails or the id no longer matches.
    const buf = fs.readFileSync(file);
    const idx = git(repo, ['verify-pack', '-v', file.replace(/\.pack$/, '.idx')]);
    const off = Number(new RegExp(`^${id} blob\\s+\\d+ \\d+ (\\d+)`, 'm').exec(idx)![1]);
    buf[off + 6] ^= 0xff;
    buf[off + 7] ^= 0xff;
    fs.writeFileSync(file, buf);
    const src = new BlobSource(repo);
    expect(() => src.tryRead(id, 5000)).toThrow(new RegExp(`object ${id} in .* is corrupt`));
    src.close();
  });

  it('reads each validated blob once, hands it to the restore from memory within the budget, and lets go of it after its last file', async () => {
    const repo = path.join(tmp(), 'repo');
    initBareRepo(repo);
    const shared = 's'.repeat(3000);
    const own = 'o'.repeat(4000);
    commitSnapshot(repo, {
      roots: ['/etc/x'],
      entries: [
        { path: '/etc/x', type: 'dir' },
        { path: '/etc/x/a', type: 'file', content: shared },
        { path: '/etc/x/b', type: 'file', content: shared },
        { path: '/etc/x/c', type: 'file', content: own },
      ],
    });
    packRepo(repo);
    const [sid, oid] = ['main:etc/x/a', 'main:etc/x/c'].map((r) => git(repo, ['rev-parse', r]).trim());
    const packFile = path.join(repo, 'objects/pack', fs.readdirSync(path.join(repo, 'objects/pack')).find((f) => f.endsWith('.pack'))!);
    const pristine = fs.readFileSync(packFile);
    /** Every byte after the pack's header flipped: any object read from it now fails its check. */
    const corruptPack = () => {
      const buf = Buffer.from(pristine);
      for (let i = 12; i < buf.length - 20; i++) buf[i] ^= 0xff;
      fs.writeFileSync(packFile, buf);
    };

    // A budget for the first blob only: the other is read again by the restore.
    const src = new BlobSource(repo, { budget: 3500 });
    try {
      expect(await src.checkBlobs([{ oid: sid, size: 3000 }, { oid, size: 4000 }])).toEqual([null, null]);
      corruptPack();
      // Read once for both files that share it, and checked against each file's size.
      const [one, two] = await src.checkBlobs([{ oid: sid, size: 3000 }, { oid: sid, size: 2999 }]);
      expect(one).toBeNull();
      expect(two).toMatch(/the metadata says 2999 bytes, its content \(blob [0-9a-f]{40}\) has 3000/);
      expect(src.tryRead(sid, 3000)!.toString()).toBe(shared);
      expect(src.tryRead(sid, 3000)!.toString()).toBe(shared);
      expect(() => src.tryRead(oid, 4000)).toThrow(/corrupt|inflate|incorrect|invalid/i);
      // Its three uses are spent: the next read goes to the (now corrupt) pack.
      expect(src.tryRead(sid, 3000)!.toString()).toBe(shared);
      expect(() => src.tryRead(sid, 3000)).toThrow(/corrupt|inflate|incorrect|invalid/i);
    } finally {
      src.close();
    }
  });

  it('checks large blobs on other threads beside the small ones: every file answered in its place, a lying copy refused', async () => {
    const repo = path.join(tmp(), 'repo');
    initBareRepo(repo);
    const big = (c: string, n: number) => Buffer.alloc(n, c).toString();
    const files = { a: big('a', 300_000), b: big('b', 70_000), s: 'small\n', c: big('c', 500_000) };
    commitSnapshot(repo, {
      roots: ['/etc/x'],
      entries: [{ path: '/etc/x', type: 'dir' }, ...Object.entries(files).map(([n, content]) => ({ path: `/etc/x/${n}`, type: 'file' as const, content }))],
    });
    const id = (n: string) => git(repo, ['rev-parse', `main:etc/x/${n}`]).trim();
    const [a, b, s, c] = ['a', 'b', 's', 'c'].map(id);
    // a and b only in a pack; c's only copy in a pack that lies: another content under its id.
    for (const o of [a, b, c]) fs.rmSync(path.join(repo, 'objects', o.slice(0, 2), o.slice(2)));
    placePack(repo, craftPack([{ type: 'blob', content: Buffer.from(files.a) }, { type: 'blob', content: Buffer.from(files.b) }]));
    placePack(repo, craftPack([{ type: 'blob', content: Buffer.from(big('d', 500_000)), claim: c }]));
    const src = new BlobSource(repo);
    try {
      const why = await src.checkBlobs([
        { oid: a, size: 300_000 },
        { oid: s, size: 6 },
        { oid: c, size: 500_000 },
        { oid: a, size: 299_999 },
        { oid: b, size: 70_000 },
        { oid: s, size: 6 },
      ]);
      expect(why[0]).toBeNull();
      expect(why[1]).toBeNull();
      expect(why[2]).toMatch(new RegExp(`^its content \\(blob ${c}\\) cannot be read: object ${c} in .* is corrupt \\(content does not match its id\\)`));
      expect(why[3]).toBe(`the metadata says 299999 bytes, its content (blob ${a}) has 300000`);
      expect(why[4]).toBeNull();
      expect(why[5]).toBeNull();
      // Kept for the restore: a's two files, then the memory goes.
      expect(src.tryRead(a, 300_000)!.toString()).toBe(files.a);
      expect(src.tryRead(b, 70_000)!.toString()).toBe(files.b);
      expect(src.objects.badPacks.size).toBe(1);
    } finally {
      src.close();
    }
  });

  it('keeps a quarter of the available memory for validated blobs, between 64 MiB and 1 GiB', () => {
    const MiB = 1024 * 1024;
    expect(checkedBudget(0)).toBe(64 * MiB);
    expect(checkedBudget(1024 * MiB)).toBe(256 * MiB);
    expect(checkedBudget(16 * 1024 * MiB)).toBe(1024 * MiB);
  });
});

describe('content ids and --verify', () => {
  it('holdsBlob agrees with git hash-object', () => {
    const f = path.join(tmp(), 'f');
    fs.writeFileSync(f, 'hello\n');
    expect(holdsBlob(f, execFileSync('git', ['hash-object', f]).toString().trim())).toBe(true);
    expect(holdsBlob(f, execFileSync('git', ['hash-object', '--stdin'], { input: 'hello' }).toString().trim())).toBe(false);
  });

  it('seconds() keeps well under a microsecond', () => {
    const ns = 1_795_306_873_512_875_124n;
    expect(Math.abs(seconds(ns) * 1e9 - Number(ns))).toBeLessThan(500);
  });

  it('verifyRestored names every difference', async () => {
    const root = tmp();
    fs.mkdirSync(path.join(root, 'etc'));
    fs.writeFileSync(path.join(root, 'etc/a'), 'changed\n', { mode: 0o644 });
    fs.symlinkSync('elsewhere', path.join(root, 'etc/l'));
    const item = (over: Partial<RestoreItem>): RestoreItem => ({ path: '', hostPath: '', type: 'file', mode: 0o644, uid: 0, user: 'root', gid: 0, group: 'root', mtimeNs: 0n, size: 0, ...over });
    const okId = execFileSync('git', ['hash-object', '--stdin'], { input: 'changed\n' }).toString().trim();
    const items = [
      item({ path: 'etc/a', hostPath: '/etc/a', size: 8, oid: okId, mode: 0o600 }),
      item({ path: 'etc/l', hostPath: '/etc/l', type: 'symlink', target: 'there', mode: 0o777 }),
      item({ path: 'etc/gone', hostPath: '/etc/gone', size: 1, oid: okId }),
    ];
    const problems = await verifyRestored(items, root, ownerResolver(loadIdTable(root), root));
    expect(problems).toEqual(['/etc/a: mode 0644, the snapshot has 0600', '/etc/l: points to elsewhere, the snapshot has there', '/etc/gone: missing']);
  });
});
