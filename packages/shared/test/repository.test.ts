import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ObjectCorruptError, ObjectMissingError } from '../src/errors.ts';
import { firstParentChain, resolveAt } from '../src/git/history.ts';
import { hashObject } from '../src/git/objects.ts';
import { PackIndex, PackIndexCache } from '../src/git/pack-index.ts';
import { PackReader } from '../src/git/pack-reader.ts';
import { Repository, initRepo, readHead } from '../src/git/repository.ts';
import { serializeTree } from '../src/git/tree.ts';
import { commitBytes, craftPack, placePack } from '../../../test-support/craft-pack.ts';

// The one object reader against lying and damaged repositories: every object it returns hashes
// to its id, a bad copy never hides a good one, and bad packs are remembered.

let dirs: string[] = [];
afterEach(() => {
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
  dirs = [];
});
function repo(): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'pacha-reader-'));
  dirs.push(d);
  initRepo(path.join(d, 'repo.git'));
  return path.join(d, 'repo.git');
}
const fsck = (r: string) => execFileSync('git', ['--git-dir', r, 'fsck', '--full', '--strict'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });

/** Three commits c1 <- c2 <- c3 in one honest pack. */
function history(r: string) {
  const blob = Buffer.from('hello\n');
  const tree = serializeTree([{ name: 'a', mode: '100644', oid: hashObject('blob', blob) }]);
  const treeId = hashObject('tree', tree);
  const c1 = commitBytes(treeId, [], 1_700_000_000, 'one\n');
  const c2 = commitBytes(treeId, [hashObject('commit', c1)], 1_700_000_100, 'two\n');
  const c3 = commitBytes(treeId, [hashObject('commit', c2)], 1_700_000_200, 'three\n');
  const p = craftPack([
    { type: 'blob', content: blob },
    { type: 'tree', content: tree },
    { type: 'commit', content: c1 },
    { type: 'commit', content: c2 },
    { type: 'commit', content: c3 },
  ]);
  placePack(r, p);
  const ids = { c1: hashObject('commit', c1), c2: hashObject('commit', c2), c3: hashObject('commit', c3), tree: treeId };
  fs.writeFileSync(path.join(r, 'refs/heads/main'), ids.c3 + '\n');
  return ids;
}

describe('Repository (the one object reader)', () => {
  it('reads a lying pack that sorts first (an id listed three times, a fake copy first) as the truth', async () => {
    const r = repo();
    const ids = history(r);
    // A fake c1 claiming a newer parent, listed under c1's id three times, in a pack named to be searched first.
    const fake = commitBytes(ids.tree, [ids.c3], 1_800_000_000, 'fake\n');
    const lying = craftPack([
      { type: 'commit', content: fake, claim: ids.c1 },
      { type: 'commit', content: fake, claim: ids.c1 },
      { type: 'commit', content: fake, claim: ids.c1 },
    ]);
    const lyingFile = placePack(r, lying, `pack-${'0'.repeat(40)}`);
    const store = new Repository(r);
    expect(store.packs()[0].packFile).toBe(lyingFile);
    const c1 = store.readCommit(ids.c1);
    expect(c1.parents).toEqual([]);
    expect(store.badPacks.get(lyingFile)).toMatch(/does not match its id/);
    // The bad pack is searched last from now on.
    expect(store.packs().at(-1)!.packFile).toBe(lyingFile);
    expect([...firstParentChain(store, ids.c3)].map((c) => c.oid)).toEqual([ids.c3, ids.c2, ids.c1]);
    expect(resolveAt(store, ids.c3, '2023-11-14T22:15:00Z')).toBe(ids.c2);
    // The index check names what is wrong with it.
    const problems = await new PackReader(lyingFile).verify();
    expect(problems.join('\n')).toMatch(/listed twice/);
    store.close();
  });

  it('falls back from a garbage pack with a copied index, and from a damaged entry to a loose copy', () => {
    const r = repo();
    const ids = history(r);
    const honest = fs.readdirSync(path.join(r, 'objects/pack')).find((n) => n.endsWith('.idx'))!;
    const shadow = path.join(r, 'objects/pack', `pack-${'0'.repeat(40)}`);
    fs.copyFileSync(path.join(r, 'objects/pack', honest), shadow + '.idx');
    fs.writeFileSync(shadow + '.pack', Buffer.alloc(fs.statSync(path.join(r, 'objects/pack', honest.replace('.idx', '.pack'))).size, 0x55));
    const store = new Repository(r);
    expect([...firstParentChain(store, ids.c3)]).toHaveLength(3);
    expect(store.badPacks.has(shadow + '.pack')).toBe(true);
    store.close();

    // Only damaged copies: a typed error with a stable code; no copy at all: ObjectMissing.
    fs.rmSync(path.join(r, 'objects/pack', honest));
    const only = new Repository(r);
    let err: unknown;
    try {
      only.read(ids.c2);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ObjectCorruptError);
    expect((err as ObjectCorruptError).code).toBe('EOBJECTCORRUPT');
    expect(() => only.read('1'.repeat(40))).toThrow(ObjectMissingError);
    expect(only.tryRead('1'.repeat(40))).toBeUndefined();
    // A good loose copy next to the damaged packed one is found.
    execFileSync('git', ['--git-dir', r, 'hash-object', '-w', '-t', 'commit', '--stdin'], { input: commitBytes(ids.tree, [ids.c1], 1_700_000_100, 'two\n') });
    only.refresh();
    expect(only.readCommit(ids.c2).parents).toEqual([ids.c1]);
    only.close();
  });

  it('reads refs loose and packed, creates repositories native git accepts', () => {
    const r = repo();
    const ids = history(r);
    expect(readHead(r)).toBe(ids.c3);
    expect(fsck(r)).toBe('');
    fs.rmSync(path.join(r, 'refs/heads/main'));
    fs.writeFileSync(path.join(r, 'packed-refs'), `# pack-refs with: peeled fully-peeled sorted\n${ids.c2} refs/heads/main\n`);
    expect(readHead(r)).toBe(ids.c2);
  });

  it('reads a packed blob into memory of its own size, one after another from the same reader', () => {
    // The rebuild keeps validated blobs up to a budget counted in their sizes: a blob must not
    // hold a larger inflate buffer behind it. Sizes above the pool's, so each is its own allocation.
    const r = repo();
    const blobs = [6000, 9000, 70_000, 5000].map((n, i) => Buffer.alloc(n, 97 + i));
    placePack(r, craftPack(blobs.map((content) => ({ type: 'blob' as const, content }))));
    const reader = new Repository(r);
    const got = blobs.map((b) => reader.readBlob(hashObject('blob', b)));
    for (let i = 0; i < blobs.length; i++) {
      expect(got[i].equals(blobs[i])).toBe(true);
      expect(got[i].buffer.byteLength).toBeLessThanOrEqual(blobs[i].length + 1);
    }
  });

  it('checks an index whole: order, duplicates, checksum', () => {
    const p = craftPack([{ type: 'blob', content: Buffer.from('a') }, { type: 'blob', content: Buffer.from('b') }], {
      idx: (e) => e.reverse(),
    });
    // buildIndex sorts; unsort it by hand: swap the two ids.
    const idx = Buffer.from(p.idx);
    const base = 8 + 1024;
    const a = Buffer.from(idx.subarray(base, base + 20));
    idx.copy(idx, base, base + 20, base + 40);
    a.copy(idx, base + 20);
    const problems = new PackIndex('x.idx', idx).check();
    expect(problems.join('\n')).toMatch(/not sorted/);
    expect(problems.join('\n')).toMatch(/checksum/);
  });
});

describe('PackIndexCache (indexes kept across Repository objects, the daemon)', () => {
  it('loads an index once, sees packs added and removed, and loads a replaced index again', () => {
    const r = repo();
    const ids = history(r);
    const cache = new PackIndexCache();
    const open = () => new Repository(r, cache);
    const first = open();
    expect(first.readCommit(ids.c3).parents).toEqual([ids.c2]);
    const index = first.packs()[0].index;
    expect(open().packs()[0].index).toBe(index);
    // A pack added: listed by the next Repository, the known index kept.
    const blob = Buffer.from('second\n');
    const extra = placePack(r, craftPack([{ type: 'blob', content: blob }]));
    const second = open();
    expect(second.packs()).toHaveLength(2);
    expect(second.has(hashObject('blob', blob))).toBe(true);
    expect(second.packs().map((p) => p.index)).toContain(index);
    // A pack removed: gone from the next Repository.
    fs.rmSync(extra.replace(/\.pack$/, '.idx'));
    fs.rmSync(extra);
    expect(open().has(hashObject('blob', blob))).toBe(false);
    // An index replaced under the same name (another file, another mtime) is read again.
    const idxFile = index.idxFile;
    fs.copyFileSync(idxFile, idxFile + '.new');
    fs.utimesSync(idxFile + '.new', 1_000_000, 1_000_000);
    fs.renameSync(idxFile + '.new', idxFile);
    const again = open();
    expect(again.packs()[0].index).not.toBe(index);
    expect(again.readCommit(ids.c3).parents).toEqual([ids.c2]);
    fsck(r);
  });
});
