import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { loadStatCache, type Node, sameStat, saveStatCache, type Sig, sigOf } from '../src/snapshot/stat-cache.ts';

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
