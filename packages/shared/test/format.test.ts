import { describe, expect, it } from 'vitest';
import { comparePaths, decodeEntry, encodeEntry, gitName, gitPath, realName, realPath, type MetadataEntry } from '../src/snapshot/format.ts';
import { pathComparator } from '../src/snapshot/changes.ts';

describe('snapshot format', () => {
  it('round-trips entries with awkward names and targets', () => {
    const e: MetadataEntry = {
      path: 'etc/a b\tc\nd\\e\u0001ü', type: 'symlink', mode: 0o777, uid: 0, user: 'root', gid: 4, group: 'adm',
      mtimeNs: 1_700_000_000_123_456_789n, size: 5, target: '../x\ty',
    };
    const line = encodeEntry(e);
    expect(line.split('\t')).toHaveLength(8);
    expect(line).not.toContain('\n');
    expect(decodeEntry(line)).toEqual(e);
    expect(() => decodeEntry('a\tfile\t0644\troot:0\troot:0\t1.000000000\tx\t')).toThrow(/bad size/);
  });

  it('encodes names git or isomorphic-git refuse, reversibly', () => {
    for (const n of ['.git', '.GIT', '.gitmodules', 'git~1', 'back\\slash', '.git. ', '.pacha-name-41']) {
      expect(gitName(n)).toMatch(/^\.pacha-name-[0-9a-f]+$/);
      expect(realName(gitName(n))).toBe(n);
    }
    expect(gitName('normal.conf')).toBe('normal.conf');
    expect(gitPath('.pacha/x')).not.toMatch(/^\.pacha\//);
    expect(realPath(gitPath('.pacha/.git/x'))).toBe('.pacha/.git/x');
  });

  it('the fast path order is byte order', () => {
    const paths = ['a/b', 'a.b', 'a', 'a-b', 'ä', 'z', '\uffff', '😀'];
    const bytes = [...paths].sort(comparePaths);
    expect([...paths].sort(pathComparator(paths))).toEqual(bytes);
    const plain = ['a/b', 'a.b', 'a', 'a-b', 'ä', 'z'];
    expect([...plain].sort(pathComparator(plain))).toEqual([...plain].sort(comparePaths));
  });
});
