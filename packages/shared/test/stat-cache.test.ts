import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { loadStatCache, type Node, quickMatches, saveStatCache } from '../src/snapshot/stat-cache.ts';
import { metadataBlob } from '../src/snapshot/metadata-blob.ts';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});

function tmp(): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'pacha-statcache-'));
  dirs.push(d);
  return d;
}

const line = (p: string, type: string, mtime: string) => `${p}\t${type}\t0644\troot:0\troot:0\t${mtime}\t1\t`;

function sample(): Node[] {
  return [
    { path: 'srv', type: 'dir', line: line('srv', 'dir', '1.000000000'), sig: '1:2:4096:1000000000:1000000000', oid: 'a'.repeat(40) },
    { path: 'srv/a\tb', type: 'file', line: line('srv/a\\tb', 'file', '2.5'), sig: '1:3:1:2000000005:18446744073', oid: 'b'.repeat(40) },
    { path: 'srv/empty', type: 'dir', line: line('srv/empty', 'dir', '3.0'), sig: '', oid: '' },
    { path: 'srv/l', type: 'symlink', line: line('srv/l', 'symlink', '4.0'), sig: '1:5:1:-4000000000:4000000000', oid: 'c'.repeat(40) },
  ];
}

describe('stat cache file', () => {
  it('round-trips every field, and a torn or foreign file is not used', async () => {
    const f = path.join(tmp(), 'statcache');
    await saveStatCache(f, { commit: 'c'.repeat(40), tree: 't'.repeat(40), settings: 's1', nodes: sample() });
    const c = loadStatCache(f)!;
    expect(c).not.toBeNull();
    expect([c.commit, c.tree, c.settings]).toEqual(['c'.repeat(40), 't'.repeat(40), 's1']);
    expect(c.nodes.map((n) => [n.path, n.type, n.line, n.sig, n.oid])).toEqual(sample().map((n) => [n.path, n.type, n.line, n.sig, n.oid]));
    expect(c.byPath.get('srv/a\tb')).toBe(c.nodes[1]);
    expect(c.metadata!.toString()).toBe(sample().map((n) => n.line + '\n').join(''));
    // Saved again from loaded nodes (bytes copied) and with one node changed in memory.
    c.nodes[2].sig = '9:9:0:1:1';
    c.nodes[0].oid = 'd'.repeat(40);
    await saveStatCache(f, { ...c });
    const again = loadStatCache(f)!;
    expect(again.nodes.map((n) => [n.sig, n.oid])).toEqual([
      ['1:2:4096:1000000000:1000000000', 'd'.repeat(40)],
      ['1:3:1:2000000005:18446744073', 'b'.repeat(40)],
      ['9:9:0:1:1', ''],
      ['1:5:1:-4000000000:4000000000', 'c'.repeat(40)],
    ]);
    const whole = fs.readFileSync(f);
    fs.writeFileSync(f, whole.subarray(0, whole.length - 3));
    expect(loadStatCache(f)).toBeNull();
    fs.writeFileSync(f, 'pacha-statcache 1\tx\ty\tz\nEND\n');
    expect(loadStatCache(f)).toBeNull();
  });

  it('compares a plain lstat with the stored signature, number by number', async () => {
    const d = tmp();
    const file = path.join(d, 'x');
    fs.writeFileSync(file, 'hello');
    const st = fs.lstatSync(file, { bigint: true });
    const sig = `${st.dev}:${st.ino}:${st.size}:${st.mtimeNs}:${st.ctimeNs}`;
    const f = path.join(d, 'statcache');
    await saveStatCache(f, { commit: 'c', tree: 't', settings: 's', nodes: [{ path: 'x', type: 'file', line: line('x', 'file', '1.0'), sig, oid: '' }] });
    const n = loadStatCache(f)!.nodes[0];
    expect(quickMatches(n, fs.lstatSync(file))).toBe(true);
    fs.appendFileSync(file, '!');
    expect(quickMatches(n, fs.lstatSync(file))).toBe(false);
    // a plain node (made by a scan) compares the same way
    expect(quickMatches({ path: 'x', type: 'file', line: '', sig, oid: '' }, fs.lstatSync(file))).toBe(false);
  });
});

describe('metadata blob', () => {
  it('copies the lines of unchanged cached nodes in blocks and equals a blob built whole', async () => {
    const f = path.join(tmp(), 'statcache');
    await saveStatCache(f, { commit: 'c', tree: 't', settings: 's', nodes: sample() });
    const c = loadStatCache(f)!;
    const whole = (nodes: Node[]) => nodes.map((n) => n.line + '\n').join('');
    // nothing changed: the cache's own text
    expect(metadataBlob(c.nodes.slice())).toBe(c.metadata);
    // lines changed in place
    const order = c.nodes.slice();
    order[1] = { ...sample()[1], line: line('srv/a\\tb', 'file', '9.123456789') };
    order[3] = { ...sample()[3], line: line('srv/l', 'symlink', '10.0') };
    expect(metadataBlob(order).toString()).toBe(whole(order));
    // paths removed and added
    const other = [c.nodes[0], { ...sample()[1], path: 'srv/new', line: line('srv/new', 'file', '1.0') }, c.nodes[2], c.nodes[3]];
    expect(metadataBlob(other).toString()).toBe(whole(other));
    expect(metadataBlob([c.nodes[1]]).toString()).toBe(whole([c.nodes[1]]));
    // a new path before every unchanged one
    const first = [{ ...sample()[0], path: 'aaa', line: line('aaa', 'dir', '1.0') }, ...c.nodes];
    expect(metadataBlob(first).toString()).toBe(whole(first));
    // nodes made by a scan (no cache): built whole
    expect(metadataBlob(sample()).toString()).toBe(whole(sample()));
    expect(metadataBlob([]).length).toBe(0);
  });
});
