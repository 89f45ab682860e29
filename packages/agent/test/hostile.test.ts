import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { commitSnapshot, git, initBareRepo, masterHostDir, packRepo, type FixtureFile } from '@pacha/test-support/git-fixture';
import { makeTestHost, type TestHost } from '@pacha/test-support/host';
import { encodeMetadataV1 } from '@pacha/shared/format/entry';
import { craftPack, placePack } from '@pacha/test-support/craft-pack';
import { listTree, uniqueTop } from './rebuild-helpers.ts';

// Damaged and hostile repositories, built with native git plumbing: each is refused with a
// message naming the path and the reason, and nothing is written on the target.

const cleanups: (() => void)[] = [];
afterEach(() => {
  for (const c of cleanups.splice(0)) c();
});

interface Case {
  host: TestHost;
  repo: string;
  top: string;
}

function setup(build: (repo: string, top: string) => void): Case {
  const base = fs.mkdtempSync(path.join(os.tmpdir(), 'pacha-hostile-'));
  cleanups.push(() => fs.rmSync(base, { recursive: true, force: true }));
  const hostsPath = path.join(base, 'hosts');
  const m = masterHostDir(hostsPath, 'evil');
  initBareRepo(m.repo);
  const top = uniqueTop();
  build(m.repo, top);
  const host = makeTestHost({ name: 'evil', tmpDir: base, config: { 'pacha.host': 'file://', 'pacha.hosts.path': hostsPath } });
  fs.mkdirSync(host.p('/var/lib/pacha'), { recursive: true });
  return { host, repo: m.repo, top };
}

function good(top: string): FixtureFile[] {
  return [
    { path: `${top}/app`, type: 'dir' },
    { path: `${top}/app/a.conf`, type: 'file', content: 'a\n' },
  ];
}

/** The target's listing, without the state dir and the kept staging dir. */
function targetListing(h: TestHost) {
  return listTree(h.root, { skip: (rel) => rel === 'tmp' || rel === 'var' });
}

async function expectRefused(c: Case, message: RegExp) {
  const before = targetListing(c.host);
  const r = await c.host.pacha(['rebuild', 'evil', '--yes']);
  expect(r.stderr).toMatch(message);
  expect(r.stderr).toContain('nothing was written');
  expect(r.code).toBe(1);
  expect(targetListing(c.host)).toEqual(before);
  expect(fs.existsSync(c.host.p(c.top))).toBe(false);
  expect(fs.existsSync(c.top)).toBe(false);
}

describe('hostile and damaged repositories are refused, nothing written', () => {
  it('a path outside the roots', async () => {
    const c = setup((repo, top) =>
      commitSnapshot(repo, { roots: [`${top}/app`], entries: [...good(top), { path: `${top}/etc-evil`, type: 'file', content: 'root::0:0::/:/bin/sh\n' }] }),
    );
    await expectRefused(c, new RegExp(`${c.top}/etc-evil: outside the snapshot's roots`));
  });

  it('a ".." component in the metadata', async () => {
    const c = setup((repo, top) => {
      const meta = encodeMetadataV1([
        { path: `${top.slice(1)}/app`, type: 'dir', mode: 0o755, user: 'root', uid: 0, group: 'root', gid: 0, mtimeNs: 0n, size: 0 },
        { path: `${top.slice(1)}/app/../../escape`, type: 'dir', mode: 0o755, user: 'root', uid: 0, group: 'root', gid: 0, mtimeNs: 0n, size: 0 },
      ]);
      commitSnapshot(repo, { roots: [`${top}/app`], entries: [{ path: `${top}/app`, type: 'dir' }], metadataText: meta });
    });
    await expectRefused(c, /app\/\.\.\/\.\.\/escape": "\.\." component/);
  });

  it('a tree entry outside the roots that the metadata does not mention', async () => {
    const c = setup((repo, top) => commitSnapshot(repo, { roots: [`${top}/app`], entries: good(top), extraBlobs: { 'etc/cron.d/evil': '* * * * * root sh\n' } }));
    await expectRefused(c, /\/etc\/cron\.d\/evil: outside the snapshot's roots/);
  });

  it('a symlink on the target pointing outside the root', async () => {
    const outside = fs.mkdtempSync(path.join(os.tmpdir(), 'pacha-outside-'));
    cleanups.push(() => fs.rmSync(outside, { recursive: true, force: true }));
    const c = setup((repo, top) => commitSnapshot(repo, { roots: [`${top}/app`], entries: good(top) }));
    fs.mkdirSync(c.host.p(c.top), { recursive: true });
    fs.symlinkSync(outside, c.host.p(`${c.top}/app`));
    const before = targetListing(c.host);
    const r = await c.host.pacha(['rebuild', 'evil', '--yes']);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`${c.top}/app is a symlink on this host (-> ${outside}): writing ${c.top}/app`);
    expect(r.stderr).toContain('nothing was written');
    expect(fs.readdirSync(outside)).toEqual([]);
    expect(targetListing(c.host)).toEqual(before);
  });

  it('a path below a symlink that the restore itself would create', async () => {
    const c = setup((repo, top) => {
      const meta = encodeMetadataV1([
        { path: `${top.slice(1)}/app`, type: 'dir', mode: 0o755, user: 'root', uid: 0, group: 'root', gid: 0, mtimeNs: 0n, size: 0 },
        { path: `${top.slice(1)}/app/link`, type: 'symlink', mode: 0o777, user: 'root', uid: 0, group: 'root', gid: 0, mtimeNs: 0n, size: 4, target: '/etc' },
        { path: `${top.slice(1)}/app/link/shadow`, type: 'file', mode: 0o644, user: 'root', uid: 0, group: 'root', gid: 0, mtimeNs: 0n, size: 2 },
      ]);
      commitSnapshot(repo, { roots: [`${top}/app`], entries: [{ path: `${top}/app`, type: 'dir' }, { path: `${top}/app/link`, type: 'symlink', target: '/etc' }], metadataText: meta });
    });
    await expectRefused(c, /app\/link\/shadow: its parent .*app\/link is a symlink in the snapshot/);
  });

  it('a path whose parent directory has no metadata line', async () => {
    const c = setup((repo, top) => {
      const meta = encodeMetadataV1([
        { path: `${top.slice(1)}/app`, type: 'dir', mode: 0o755, user: 'root', uid: 0, group: 'root', gid: 0, mtimeNs: 0n, size: 0 },
        { path: `${top.slice(1)}/app/sub/deep/f`, type: 'file', mode: 0o644, user: 'root', uid: 0, group: 'root', gid: 0, mtimeNs: 0n, size: 2 },
      ]);
      commitSnapshot(repo, { roots: [`${top}/app`], entries: [{ path: `${top}/app`, type: 'dir' }, { path: `${top}/app/sub/deep/f`, type: 'file', content: 'x\n' }], metadataText: meta });
    });
    await expectRefused(c, /app\/sub\/deep\/f: its parent directory .*app\/sub has no metadata line/);
  });

  it('a missing object', async () => {
    let blob = '';
    const c = setup((repo, top) => {
      commitSnapshot(repo, { roots: [`${top}/app`], entries: good(top) });
      blob = git(repo, ['rev-parse', `main:${top.slice(1)}/app/a.conf`]).trim();
      fs.rmSync(path.join(repo, 'objects', blob.slice(0, 2), blob.slice(2)));
    });
    await expectRefused(c, new RegExp(`${c.top}/app/a.conf: its content \\(blob ${blob}\\) is missing from the repository`));
  });

  // Blobs of 64 KiB or more are inflated and hashed on other threads (Repository.readAsync): the
  // same refusal when their pack lies.
  describe('a large blob whose only copy is in a pack that lies', () => {
    const big = (c: string) => Buffer.alloc(200 * 1024, c);
    /** The snapshot holds big.bin (200 KiB of "a"); its only copy is in the crafted pack. */
    function lyingCase(craft: (id: string) => Buffer | { pack: Buffer; idx: Buffer; checksum: string }) {
      let blob = '';
      const c = setup((repo, top) => {
        commitSnapshot(repo, { roots: [`${top}/app`], entries: [...good(top), { path: `${top}/app/big.bin`, type: 'file', content: big('a') }] });
        blob = git(repo, ['rev-parse', `main:${top.slice(1)}/app/big.bin`]).trim();
        fs.rmSync(path.join(repo, 'objects', blob.slice(0, 2), blob.slice(2)));
        const p = craft(blob);
        if (!Buffer.isBuffer(p)) placePack(repo, { ...p, ids: [] });
      });
      return { c, blob };
    }

    it('other content under its id', async () => {
      const { c, blob } = lyingCase((id) => craftPack([{ type: 'blob', content: big('b'), claim: id }]));
      await expectRefused(c, new RegExp(`${c.top}/app/big.bin: its content \\(blob ${blob}\\) cannot be read: object ${blob} in .* is corrupt \\(content does not match its id\\)`));
    });

    it('its entry cut short', async () => {
      const { c, blob } = lyingCase((id) => {
        const p = craftPack([{ type: 'blob', content: Buffer.concat([Buffer.alloc(100 * 1024, 'a'), Buffer.from(Array.from({ length: 100 * 1024 }, (_, i) => (i * 7919) % 251))]), claim: id }]);
        // The pack ends in the middle of the entry's zlib stream; the index still lists it.
        return { ...p, pack: p.pack.subarray(0, p.pack.length - 4096) };
      });
      await expectRefused(c, new RegExp(`${c.top}/app/big.bin: its content \\(blob ${blob}\\) cannot be read: .*${blob}.* is corrupt`));
    });
  });

  it('a ref to nothing', async () => {
    const c = setup((repo, top) => {
      commitSnapshot(repo, { roots: [`${top}/app`], entries: good(top) });
      packRepo(repo);
      fs.writeFileSync(path.join(repo, 'refs/heads/main'), 'deadbeef'.repeat(5) + '\n');
    });
    const r = await c.host.pacha(['rebuild', 'evil', '--yes']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/refs\/heads\/main points to deadbeef.*which is not a commit in the repository/);
    expect(fs.existsSync(c.host.p(c.top))).toBe(false);
  });

  it('metadata that does not parse', async () => {
    const c = setup((repo, top) => commitSnapshot(repo, { roots: [`${top}/app`], entries: good(top), metadataText: `${top.slice(1)}/app\tdir\t0755\n` }));
    const r = await c.host.pacha(['rebuild', 'evil', '--yes']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/repository is damaged: .*\.pacha\/metadata line 1: metadata line has 3 fields, expected 8/);
    expect(fs.existsSync(c.host.p(c.top))).toBe(false);
  });

  it('metadata naming a file the tree does not hold', async () => {
    const c = setup((repo, top) => {
      const entries = good(top);
      const meta = encodeMetadataV1([
        { path: `${top.slice(1)}/app`, type: 'dir', mode: 0o755, user: 'root', uid: 0, group: 'root', gid: 0, mtimeNs: 0n, size: 0 },
        { path: `${top.slice(1)}/app/a.conf`, type: 'file', mode: 0o644, user: 'root', uid: 0, group: 'root', gid: 0, mtimeNs: 0n, size: 2 },
        { path: `${top.slice(1)}/app/ghost`, type: 'file', mode: 0o644, user: 'root', uid: 0, group: 'root', gid: 0, mtimeNs: 0n, size: 2 },
      ]);
      commitSnapshot(repo, { roots: [`${top}/app`], entries, metadataText: meta });
    });
    await expectRefused(c, /app\/ghost: metadata says file, the tree has nothing/);
  });
});

describe('a repository that lies about its contents', () => {
  it('wrong sizes, a wrong type and a missing blob: every problem listed, nothing written', async () => {
    let missing = '';
    const c = setup((repo, top) => {
      // 300 files: the lies sit at the end, after more than a batch of honest files.
      const files = Array.from({ length: 300 }, (_, i) => ({ path: `${top}/app/f${String(i).padStart(3, '0')}.conf`, type: 'file' as const, content: `file ${i}\n` }));
      const entries: FixtureFile[] = [{ path: `${top}/app`, type: 'dir' }, ...files, { path: `${top}/app/zz-link`, type: 'symlink', target: 'f000.conf' }];
      const meta = entries.map((e) => ({
        path: e.path.slice(1),
        type: e.type,
        mode: e.type === 'dir' ? 0o755 : e.type === 'symlink' ? 0o777 : 0o644,
        user: 'root',
        uid: 0,
        group: 'root',
        gid: 0,
        mtimeNs: 0n,
        size: e.type === 'file' ? Buffer.byteLength(e.content as string) : e.type === 'symlink' ? 9 : 0,
        target: e.type === 'symlink' ? e.target : undefined,
      }));
      meta[290].size = 4096; // bigger than it is
      meta[299].size = 1; // smaller than it is
      meta[301] = { ...meta[301], type: 'file', size: 9, target: undefined }; // the tree holds a symlink
      commitSnapshot(repo, { roots: [`${top}/app`], entries, metadataText: encodeMetadataV1(meta) });
      missing = git(repo, ['rev-parse', `main:${top.slice(1)}/app/f295.conf`]).trim();
      fs.rmSync(path.join(repo, 'objects', missing.slice(0, 2), missing.slice(2)));
    });
    const before = targetListing(c.host);
    const r = await c.host.pacha(['rebuild', 'evil', '--yes']);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('nothing was written');
    expect(r.stderr).toContain(`${c.top}/app/f289.conf: the metadata says 4096 bytes, its content (blob `);
    expect(r.stderr).toMatch(new RegExp(`${c.top}/app/f298.conf: the metadata says 1 bytes, its content \\(blob [0-9a-f]{40}\\) has 9`));
    expect(r.stderr).toContain(`${c.top}/app/f295.conf: its content (blob ${missing}) is missing from the repository`);
    expect(r.stderr).toContain(`${c.top}/app/zz-link: metadata says file, the tree has blob 120000`);
    expect(targetListing(c.host)).toEqual(before);
    expect(fs.existsSync(c.host.p(c.top))).toBe(false);
  });
});
