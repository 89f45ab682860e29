import { execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';
import { afterEach, describe, expect, it } from 'vitest';
import { hashObject } from '../src/git/objects.ts';
import { serializeCommit } from '../src/git/commit.ts';
import { serializeTree } from '../src/git/tree.ts';
import { PackIndex, buildIndex } from '../src/git/pack-index.ts';
import { hashFile, PackWriter } from '../src/git/pack-writer.ts';
import { Repository, initRepo, readHead, updateHead } from '../src/git/repository.ts';
import { consolidatePacks } from '../src/git/consolidate.ts';

let dirs: string[] = [];
afterEach(() => {
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
  dirs = [];
});
async function repo(): Promise<string> {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'pacha-git-'));
  dirs.push(d);
  await initRepo(path.join(d, 'repo.git'));
  return path.join(d, 'repo.git');
}
const git = (dir: string, args: string[]) => execFileSync('git', ['--git-dir', dir, ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
const packDir = (r: string) => path.join(r, 'objects/pack');

describe('git object store', () => {
  it('writes packs native git accepts, with objects hashed as git does', async () => {
    const r = await repo();
    expect(fs.readFileSync(path.join(r, 'HEAD'), 'utf8')).toBe('ref: refs/heads/main\n');
    expect(await readHead(r)).toBeNull();
    const w = PackWriter.create(packDir(r));
    const blob = w.addObject('blob', Buffer.from('hello\n'));
    expect(blob).toBe('ce013625030ba8dba906f756967f9e9ca394464a'); // git hash-object of "hello\n"
    const tree = w.addObject('tree', serializeTree([{ name: 'hello.txt', mode: '100644', oid: blob }]));
    const commit = w.addObject('commit', serializeCommit({ tree, parent: null, author: 'pacha <pacha@h>', time: 1_700_000_000, message: 'first' }));
    // a second add of the same object writes nothing
    expect(w.addObject('blob', Buffer.from('hello\n'))).toBe(blob);
    expect(w.count).toBe(3);
    const done = await w.finish();
    expect(done!.count).toBe(3);
    expect(path.basename(done!.packFile)).toBe(`pack-${done!.id}.pack`);
    expect(fs.readdirSync(packDir(r)).sort()).toEqual([`pack-${done!.id}.idx`, `pack-${done!.id}.pack`]);
    updateHead(r, commit);
    expect(await readHead(r)).toBe(commit);
    git(r, ['fsck', '--full', '--strict']);
    expect(git(r, ['log', '--format=%s'])).toBe('first\n');
    expect(git(r, ['show', 'HEAD:hello.txt'])).toBe('hello\n');
    // native git agrees on the index
    expect(git(r, ['verify-pack', '-v', done!.idxFile])).toContain(blob);
    expect(() => updateHead(r, 'abc')).toThrow(/not a full commit id/);
  });

  it('skips objects the repository already has, and an empty pack is no pack', async () => {
    const r = await repo();
    const w1 = PackWriter.create(packDir(r));
    const a = w1.addObject('blob', Buffer.from('a'));
    await w1.finish();
    const store = new Repository(r);
    expect(store.has(a)).toBe(true);
    expect(store.has(hashObject('blob', Buffer.from('b')))).toBe(false);
    const w2 = PackWriter.create(packDir(r), { known: (oid) => store.has(oid) });
    w2.addObject('blob', Buffer.from('a'));
    expect(await w2.finish()).toBeNull();
    expect(fs.readdirSync(packDir(r))).toHaveLength(2);
    const w3 = PackWriter.create(packDir(r));
    w3.addObject('blob', Buffer.from('c'));
    w3.abort();
    expect(fs.readdirSync(packDir(r))).toHaveLength(2);
  });

  it('streams a large file (truncating a duplicate back) and copies raw entries', async () => {
    const r = await repo();
    const file = path.join(path.dirname(r), 'big');
    const data = Buffer.alloc(5 * 1024 * 1024 + 17);
    for (let i = 0; i < data.length; i += 7) data[i] = (i * 31) & 0xff;
    fs.writeFileSync(file, data);
    const w = PackWriter.create(packDir(r));
    const first = await w.addBlobFromFile(file);
    expect(first).toMatchObject({ oid: hashObject('blob', data), size: data.length, written: true, bytesRead: data.length });
    const again = await w.addBlobFromFile(file);
    expect(again.written).toBe(false);
    expect(hashFile(file).oid).toBe(first.oid);
    // a pre-deflated entry, as copied from another pack
    const raw = Buffer.from('raw entry content');
    const rawOid = hashObject('blob', raw);
    expect(w.addRawEntry({ oid: rawOid, type: 'blob', size: raw.length, data: zlib.deflateSync(raw) })).toBe(true);
    const done = (await w.finish())!;
    expect(done.count).toBe(2);
    const idx = PackIndex.load(done.idxFile);
    expect(idx.count).toBe(2);
    const reader = new Repository(r);
    const out = path.join(path.dirname(r), 'out');
    expect(await reader.writeBlobTo(first.oid, out)).toBe(data.length);
    expect(fs.readFileSync(out).equals(data)).toBe(true);
    expect(reader.readBlob(rawOid).toString()).toBe('raw entry content');
    expect(git(r, ['cat-file', '-p', rawOid])).toBe('raw entry content');
    git(r, ['fsck', '--full', '--strict']);
  });

  it('reads whole objects and deltas from packs written by native git', async () => {
    const r = await repo();
    const work = path.join(path.dirname(r), 'work');
    fs.mkdirSync(work);
    const base = Buffer.from('line\n'.repeat(2000));
    fs.writeFileSync(path.join(work, 'f'), base);
    const g = (args: string[]) => execFileSync('git', ['-C', work, '--git-dir', r, '--work-tree', work, '-c', 'user.name=t', '-c', 'user.email=t@t', ...args], { stdio: 'pipe' });
    g(['add', '-A']);
    g(['commit', '-qm', 'one']);
    const changed = Buffer.concat([base, Buffer.from('one more\n')]);
    fs.writeFileSync(path.join(work, 'f'), changed);
    g(['add', '-A']);
    g(['commit', '-qm', 'two']);
    g(['repack', '-adq', '-f', '--depth=10', '--window=10']);
    const oid = git(r, ['rev-parse', 'HEAD~1:f']).trim();
    const reader = new Repository(r);
    const out = path.join(path.dirname(r), 'out');
    expect(await reader.writeBlobTo(oid, out)).toBe(base.length);
    expect(fs.readFileSync(out).equals(base)).toBe(true);
    expect(await readHead(r)).toBe(git(r, ['rev-parse', 'HEAD']).trim());
  });

  it('reads every object of a pack the same in pack order (read ahead), backwards and in random order', async () => {
    const r = await repo();
    const w = PackWriter.create(packDir(r));
    const contents = Array.from({ length: 600 }, (_, i) => Buffer.from(`object ${i}\n`.repeat(1 + ((i * 37) % 400))));
    // A few larger than the read-ahead buffer, between the small ones.
    for (const i of [100, 101, 350]) contents[i] = crypto.randomBytes(1536 * 1024);
    const ids = contents.map((c) => w.addObject('blob', c));
    await w.finish();
    const byOffset = [...ids.keys()];
    const reader = new Repository(r);
    const idx = reader.packs()[0].index;
    byOffset.sort((a, b) => idx.offsetAt(idx.findHex(ids[a])) - idx.offsetAt(idx.findHex(ids[b])));
    const orders = [byOffset, [...byOffset].reverse(), [...byOffset].sort(() => Math.random() - 0.5), byOffset];
    for (const order of orders) for (const i of order) expect(reader.readBlob(ids[i]).equals(contents[i])).toBe(true);
    expect(reader.badPacks.size).toBe(0);
    reader.close();
  });

  it('merges many small packs into one, keeping every object', async () => {
    const r = await repo();
    let parent: string | null = null;
    const blobs: string[] = [];
    for (let i = 0; i < 5; i++) {
      const w = PackWriter.create(packDir(r));
      const b = w.addObject('blob', Buffer.from(`version ${i}\n`));
      blobs.push(b);
      const t = w.addObject('tree', serializeTree([{ name: 'f', mode: '100644', oid: b }]));
      parent = w.addObject('commit', serializeCommit({ tree: t, parent, author: 'pacha <pacha@h>', time: 1_700_000_000 + i, message: `c${i}` }));
      await w.finish();
    }
    updateHead(r, parent!);
    expect(await consolidatePacks(r, { minPacks: 10 })).toBeNull();
    expect(await consolidatePacks(r, { minPacks: 5 })).toEqual({ packs: 5, objects: 15 });
    expect(fs.readdirSync(packDir(r)).filter((f) => f.endsWith('.pack'))).toHaveLength(1);
    git(r, ['fsck', '--full', '--strict']);
    expect(git(r, ['log', '--format=%s']).split('\n').filter(Boolean)).toEqual(['c4', 'c3', 'c2', 'c1', 'c0']);
    for (const [i, b] of blobs.entries()) expect(git(r, ['cat-file', '-p', b])).toBe(`version ${i}\n`);
  });
});

describe('pack writer memory', () => {
  it('holds only the bytes of many small entries, not the buffers they were read into', async () => {
    const dir = await repo();
    const v8 = await import('node:v8');
    const vm = await import('node:vm');
    v8.setFlagsFromString('--expose-gc');
    const gc = vm.runInNewContext('gc') as () => void;
    gc();
    const before = process.memoryUsage().arrayBuffers;
    const pack = PackWriter.create(path.join(dir, 'objects', 'pack'));
    for (let i = 0; i < 3000; i++) {
      // Small buffers come from Node's shared 8 KiB pool slabs, as file contents read whole do.
      pack.addObject('blob', Buffer.from(`small object ${i} `.repeat(20)));
    }
    // Backing stores of collected buffers are freed after the collection: let that happen first.
    for (let i = 0; i < 3; i++) {
      gc();
      await new Promise((r) => setImmediate(r));
    }
    const held = process.memoryUsage().arrayBuffers - before;
    // 3000 entries of ~60 bytes each; holding views into pool slabs took ~60 MiB here.
    expect(held).toBeLessThan(12 * 2 ** 20);
    const done = (await pack.finish())!;
    expect(done.count).toBe(3000);
    execFileSync('git', ['--git-dir', dir, 'fsck', '--full', '--strict'], { stdio: 'pipe' });
  });
});

describe('pack index', () => {
  it("finds each entry's end among 32- and 64-bit offsets, before and after it sorts them", () => {
    // An index of a pack over 4 GiB: two entries past 2 GiB take 64-bit offsets.
    const offsets = [12, 5_000_000_000, 100, 3_000_000_000];
    const n = offsets.length;
    const large = offsets.filter((o) => o >= 2 ** 31);
    const buf = Buffer.alloc(8 + 1024 + n * 28 + large.length * 8 + 40);
    Buffer.from([0xff, 0x74, 0x4f, 0x63, 0, 0, 0, 2]).copy(buf);
    for (let b = 0; b < 256; b++) buf.writeUInt32BE(Math.min(n, Math.max(0, b)), 8 + b * 4); // ids 01.., 02.., 03.., 04..
    let li = 0;
    offsets.forEach((o, i) => {
      buf[8 + 1024 + i * 20] = i + 1;
      const at = 8 + 1024 + n * 24 + i * 4;
      if (o < 2 ** 31) buf.writeUInt32BE(o, at);
      else {
        buf.writeUInt32BE((0x80000000 | li) >>> 0, at);
        buf.writeBigUInt64BE(BigInt(o), 8 + 1024 + n * 28 + li * 8);
        li++;
      }
    });
    const idx = new PackIndex('/nowhere/x.idx', buf);
    const packSize = 6_000_000_000;
    const ends = () => [12, 100, 3_000_000_000, 5_000_000_000].map((o) => idx.entryEnd(o, packSize));
    const want = [100, 3_000_000_000, 5_000_000_000, packSize - 20];
    expect(ends()).toEqual(want); // one pass over the offsets each
    expect(ends()).toEqual(want); // sorted
    expect(offsets.map((_, i) => idx.offsetAt(i))).toEqual(offsets);
  });

  it('finds every id among thousands (many under each first byte), and only those; a lying index\'s duplicates all', () => {
    // Ids made to differ late too: pairs that share their first 19 bytes.
    const ids: Buffer[] = [];
    for (let i = 0; i < 3000; i++) {
      const id = crypto.createHash('sha1').update(`object ${i}`).digest();
      ids.push(id, Buffer.concat([id.subarray(0, 19), Buffer.from([id[19] ^ 1])]));
    }
    const entries = ids.map((oid, i) => ({ oid, crc: 0, offset: 12 + i * 10 }));
    const idx = new PackIndex('/nowhere/x.idx', buildIndex(entries, Buffer.alloc(20)));
    const sorted = [...ids].sort(Buffer.compare);
    for (let i = 0; i < sorted.length; i++) expect(idx.find(sorted[i])).toBe(i);
    for (const id of ids.slice(0, 200)) {
      const absent = Buffer.from(id);
      absent[19] ^= 2; // neither of a pair
      expect(idx.find(absent)).toBe(-1);
    }
    // The same id listed three times: every position is tried.
    const lying = new PackIndex('/nowhere/y.idx', buildIndex([...entries, ...[1, 2].map((k) => ({ oid: ids[7], crc: 0, offset: 100_000 + k }))], Buffer.alloc(20)));
    const at = lying.findAll(ids[7]);
    expect(at).toHaveLength(3);
    expect(at.map((i) => lying.oidAt(i))).toEqual(Array(3).fill(ids[7].toString('hex')));
    expect(lying.findAll(Buffer.alloc(20, 0xff))).toEqual([]);
  });
});
