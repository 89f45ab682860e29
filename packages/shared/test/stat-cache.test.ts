import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { journalOf, loadStatCache, type Node, persistStatCache, sameStat, saveStatCache, type Sig, sigOf, type StatCache } from '../src/snapshot/stat-cache.ts';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});

function tmp(): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'pacha-statcache-'));
  dirs.push(d);
  return d;
}

const line = (type: string, mtime: string) => `${type}\t0644\troot:0\troot:0\t${mtime}\t1\t\t`;
const sig = (dev: number, ino: number, size: number, mtimeMs: number, ctimeMs: number): Sig => ({ dev, ino, size, mtimeMs, ctimeMs });

function sample(): Node[] {
  return [
    { path: 'srv', type: 'dir', line: line('dir', '1.000000000'), sig: sig(1, 2, 4096, 1000, 1000), oid: 'a'.repeat(40) },
    { path: 'srv/a\tb', type: 'file', line: line('file', '2.5'), sig: sig(1, 3, 1, 2000.000005, 18446.744073), oid: 'b'.repeat(40) },
    { path: 'srv/empty', type: 'dir', line: line('dir', '3.0'), sig: null, oid: '' },
    { path: 'srv/l', type: 'symlink', line: line('symlink', '4.0'), sig: sig(1, 5, 1, 4000, 4000), oid: 'c'.repeat(40) },
  ];
}

const rows = (nodes: Node[]) => nodes.map((n) => [n.path, n.type, n.line, n.sig, n.oid]);

describe('stat cache file', () => {
  it('round-trips every field, and a torn or foreign file is not used', async () => {
    const f = path.join(tmp(), 'statcache');
    await saveStatCache(f, { commit: 'c'.repeat(40), tree: 't'.repeat(40), settings: 's1', nodes: sample() });
    const c = loadStatCache(f)!;
    expect(c).not.toBeNull();
    expect([c.commit, c.tree, c.settings]).toEqual(['c'.repeat(40), 't'.repeat(40), 's1']);
    expect(rows(c.nodes)).toEqual(rows(sample()));
    expect(c.byPath.get('srv/a\tb')).toBe(c.nodes[1]);
    // Saved again from loaded nodes (blocks copied) and with some nodes changed in memory.
    c.nodes[2].sig = sig(9, 9, 0, 1, 1);
    c.nodes[0].oid = 'd'.repeat(40);
    c.nodes[3].line = line('symlink', '10.0');
    const added: Node = { path: 'srv/new', type: 'file', line: line('file', '5.0'), sig: null, oid: 'e'.repeat(40) };
    const nodes = [c.nodes[0], c.nodes[1], c.nodes[2], c.nodes[3], added];
    await saveStatCache(f, { ...c, nodes });
    const again = loadStatCache(f)!;
    expect(rows(again.nodes)).toEqual(rows(nodes));
    const whole = fs.readFileSync(f);
    fs.writeFileSync(f, whole.subarray(0, whole.length - 3));
    expect(loadStatCache(f)).toBeNull();
    fs.writeFileSync(f, 'pacha-statcache 3\tx\ty\tz\nEND\n');
    expect(loadStatCache(f)).toBeNull();
  });

  it('its nodes by path answer as a Map, whatever is asked first', async () => {
    const f = path.join(tmp(), 'statcache');
    await saveStatCache(f, { commit: 'c'.repeat(40), tree: 't'.repeat(40), settings: 's1', nodes: sample() });
    const all = sample().map((n) => n.path);
    // The files enter the Map on a miss: each way of asking sees every path.
    const asks: ((m: Map<string, Node>) => unknown)[] = [
      (m) => [m.size, m.has('srv/l'), m.get('srv')?.type],
      (m) => m.get('srv/a\tb')?.path,
      (m) => m.has('srv/none'),
      (m) => [...m.keys()].sort(),
      (m) => [...m].length,
      (m) => [...m.values()].length,
      (m) => m.delete('srv/a\tb'),
    ];
    const answers = [[4, true, 'dir'], 'srv/a\tb', false, [...all].sort(), 4, 4, true];
    for (let k = 0; k < asks.length; k++) {
      const m = loadStatCache(f)!.byPath;
      expect(asks[k](m), `ask ${k}`).toEqual(answers[k]);
      expect(m.size).toBe(k === asks.length - 1 ? 3 : 4);
      expect(m.get('srv/a\tb')?.path).toBe(k === asks.length - 1 ? undefined : 'srv/a\tb');
      expect([...m.keys()].sort()).toEqual(all.filter((p) => k !== asks.length - 1 || p !== 'srv/a\tb').sort());
    }
    const m = loadStatCache(f)!.byPath;
    m.set('srv/new', { path: 'srv/new', type: 'file', line: line('file', '5.0'), sig: null, oid: '' });
    expect([m.size, m.has('srv/a\tb'), m.has('srv/new')]).toEqual([5, true, true]);
    // Changes before the files are entered, then enough misses that they all go in.
    const r = loadStatCache(f)!.byPath;
    const ab2: Node = { ...sample()[1], line: line('file', '7.0') };
    r.set('srv/a\tb', ab2);
    expect([r.size, r.delete('srv/l'), r.delete('srv/l'), r.size, r.get('srv/a\tb')]).toEqual([4, true, false, 3, ab2]);
    r.set('srv/l', sample()[3]);
    for (let i = 0; i < 100; i++) expect(r.get(`srv/x${i}`)).toBeUndefined();
    expect([r.size, r.get('srv/a\tb'), r.get('srv/l')?.path, [...r.keys()].sort()]).toEqual([4, ab2, 'srv/l', [...all].sort()]);
  });

  it('compares a plain lstat with the stored signature, number by number', async () => {
    const d = tmp();
    const file = path.join(d, 'x');
    fs.writeFileSync(file, 'hello');
    const s = sigOf(fs.lstatSync(file, { bigint: true }));
    const f = path.join(d, 'statcache');
    await saveStatCache(f, { commit: 'c', tree: 't', settings: 's', nodes: [{ path: 'x', type: 'file', line: line('file', '1.0'), sig: s, oid: '' }] });
    const n = loadStatCache(f)!.nodes[0];
    expect(sameStat(n, fs.lstatSync(file))).toBe(true);
    // a plain node (made by a scan) compares the same way
    expect(sameStat({ path: 'x', type: 'file', line: '', sig: s, oid: '' }, fs.lstatSync(file))).toBe(true);
    fs.appendFileSync(file, '!');
    expect(sameStat(n, fs.lstatSync(file))).toBe(false);
    expect(sameStat({ path: 'x', type: 'file', line: '', sig: s, oid: '' }, fs.lstatSync(file))).toBe(false);
    // no signature: never unchanged
    expect(sameStat({ path: 'x', type: 'file', line: '', sig: null, oid: '' }, fs.lstatSync(file))).toBe(false);
  });
});

describe('stat cache journal', () => {
  const c = (n: number) => String(n).repeat(40);
  const cache = (commit: string, nodes: Node[]): StatCache => ({ commit, tree: 't'.repeat(40), settings: 's1', nodes, byPath: new Map(nodes.map((n) => [n.path, n])) });

  it('extends the file line by line; replayed, it gives the cache a whole write gives', async () => {
    const f = path.join(tmp(), 'statcache');
    const saved = await saveStatCache(f, cache(c(1), sample()));
    const whole = fs.readFileSync(f);
    const c1 = loadStatCache(f)!;
    expect(c1.saved).toEqual(saved);
    // Snapshot 2: a file deleted, a record and a signature changed, a path added between two.
    const [srv, ab, empty, l] = sample();
    const empty2: Node = { ...empty, sig: sig(1, 4, 0, 5, 5) };
    const l2: Node = { ...l, line: line('symlink', '9.0'), oid: 'f'.repeat(40) };
    const added: Node = { path: 'srv/d', type: 'file', line: line('file', '6.0'), sig: null, oid: 'e'.repeat(40) };
    const n2 = [srv, added, empty2, l2];
    const c2 = cache(c(2), n2);
    c2.saved = await persistStatCache(f, c1, c2, { parent: c(1), set: [added, empty2, l2], deleted: ['srv/a\tb'] });
    expect(fs.readFileSync(f).equals(whole)).toBe(true);
    let back = loadStatCache(f)!;
    expect([back.commit, rows(back.nodes)]).toEqual([c(2), rows(n2)]);
    expect(back.saved).toEqual(c2.saved);
    // Snapshot 3: the deleted path of the file back, the added one gone, another added.
    const other: Node = { ...added, path: 'srv/m' };
    const n3 = [srv, ab, empty2, l2, other];
    const c3 = cache(c(3), n3);
    c3.saved = await persistStatCache(f, back, c3, { parent: c(2), set: [ab, other], deleted: ['srv/d'] });
    back = loadStatCache(f)!;
    expect([back.commit, rows(back.nodes)]).toEqual([c(3), rows(n3)]);
    expect(back.byPath.size).toBe(5);

    // A torn last line is not replayed (the cache is the commit before), and the next save is whole.
    const j = journalOf(f);
    const lines = fs.readFileSync(j);
    fs.writeFileSync(j, lines.subarray(0, lines.length - 5));
    back = loadStatCache(f)!;
    expect([back.commit, rows(back.nodes), back.saved]).toEqual([c(2), rows(n2), undefined]);
    const again = await persistStatCache(f, back, c3, { parent: c(2), set: [ab, other], deleted: ['srv/d'] });
    expect(fs.existsSync(j)).toBe(false);
    expect(again.journalBytes).toBe(0);
    expect(rows(loadStatCache(f)!.nodes)).toEqual(rows(n3));

    // A journal that does not start from the file's commit (left by an older file) is not replayed.
    fs.writeFileSync(j, lines);
    back = loadStatCache(f)!;
    expect([back.commit, rows(back.nodes), back.saved]).toEqual([c(3), rows(n3), undefined]);
  });

  it('replays changed records in their places; a path added and deleted again leaves nothing', async () => {
    const f = path.join(tmp(), 'statcache');
    await saveStatCache(f, cache(c(1), sample()));
    const [srv, ab, empty, l] = sample();
    const ab2: Node = { ...ab, line: line('file', '7.0'), oid: 'd'.repeat(40) };
    const b: Node = { path: 'srv/b', type: 'file', line: line('file', '8.0'), sig: null, oid: 'e'.repeat(40) };
    const c2 = cache(c(2), [srv, ab2, b, empty, l]);
    c2.saved = await persistStatCache(f, loadStatCache(f)!, c2, { parent: c(1), set: [ab2, b], deleted: [] });
    const n3 = [srv, ab2, empty, l];
    await persistStatCache(f, loadStatCache(f)!, cache(c(3), n3), { parent: c(2), set: [], deleted: ['srv/b'] });
    expect(fs.existsSync(journalOf(f))).toBe(true);
    const back = loadStatCache(f)!;
    expect([back.commit, rows(back.nodes), back.byPath.size, back.byPath.has('srv/b')]).toEqual([c(3), rows(n3), 4, false]);
    expect(rows([back.byPath.get('srv/a\tb')!])).toEqual(rows([ab2]));
  });

  it('is written whole again once the journal has grown to an eighth of the file, or when the file is not the cache it extends', async () => {
    const f = path.join(tmp(), 'statcache');
    await saveStatCache(f, cache(c(1), sample()));
    let prev = loadStatCache(f)!;
    // Not what the files hold: written whole.
    const c2 = cache(c(2), sample());
    expect((await persistStatCache(f, { ...prev, saved: undefined }, c2, { parent: c(1), set: [], deleted: [] })).journalBytes).toBe(0);
    prev = loadStatCache(f)!;
    let lines = 0;
    for (let i = 3; prev.saved!.journalBytes < 64 * 1024; i++, lines++) {
      const n = { ...sample()[1], line: line('file', `${i}.0`) };
      const next = cache(`${i}`.padStart(40, '0'), [sample()[0], n, ...sample().slice(2)]);
      next.saved = await persistStatCache(f, prev, next, { parent: prev.commit, set: [n], deleted: [] });
      prev = next;
    }
    expect(lines).toBeGreaterThan(100);
    expect(loadStatCache(f)!.commit).toBe(prev.commit);
    const next = cache(c(9), sample());
    expect(await persistStatCache(f, prev, next, { parent: prev.commit, set: [], deleted: [] })).toMatchObject({ journalBytes: 0 });
    expect(fs.existsSync(journalOf(f))).toBe(false);
    expect(loadStatCache(f)!.commit).toBe(c(9));
  });
});
