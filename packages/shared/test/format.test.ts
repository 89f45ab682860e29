import { describe, expect, it } from 'vitest';
import { comparePaths, decodeEntryV1, decodeFields, encodeEntryV1, encodeFields, type MetadataEntry } from '../src/format/entry.ts';
import { gitName, gitPath, realName, realPath } from '../src/format/names.ts';
import { decodeDirMetadata, dirLine, pathComparator, snapshotMessage, snapshotTrailers, summaryLine } from '../src/format/snapshot.ts';
import { ignoreMatcher } from '../src/snapshot/ignore.ts';

const awkward: MetadataEntry = {
  path: 'etc/a b\tc\nd\\e\u0001ü', type: 'symlink', mode: 0o777, uid: 0, user: 'root', gid: 4, group: 'adm',
  mtimeNs: 1_700_000_000_123_456_789n, size: 5, target: '../x\ty',
};

describe('snapshot format', () => {
  it('round-trips format 1 lines with awkward names and targets', () => {
    const line = encodeEntryV1(awkward);
    expect(line.split('\t')).toHaveLength(8);
    expect(line).not.toContain('\n');
    expect(decodeEntryV1(line)).toEqual(awkward);
    expect(() => decodeEntryV1('a\tfile\t0644\troot:0\troot:0\t1.000000000\tx\t')).toThrow(/bad size/);
  });

  it('round-trips format 2 records, extended attributes included, one line each', () => {
    // The field's syntax is xattr/encode.ts's; the record keeps it as text.
    const xattrs = 'security.capability=cap:cap_net_bind_service+ep user.a\\x20b="x y"';
    const e: MetadataEntry = { ...awkward, xattrs };
    const fields = encodeFields(e);
    expect(fields.split('\t')).toHaveLength(8);
    expect(fields).not.toContain('\n');
    expect(fields.split('\t')[7]).toBe(xattrs);
    expect(decodeFields(awkward.path, fields)).toEqual(e);
    const line = dirLine('a b\tc\nd\\e\u0001ü', fields);
    expect(decodeDirMetadata('etc', line + '\n', 'etc/.pacha')).toEqual([e]);
    expect(decodeFields('x', encodeFields({ ...awkward, xattrs: undefined }))).toEqual({ ...awkward, path: 'x' });
    // the directory itself is '.'; a name is one path component
    expect(decodeDirMetadata('etc', dirLine('.', encodeFields({ ...awkward, type: 'dir', target: undefined, size: 0 })) + '\n', 'w')[0].path).toBe('etc');
    expect(() => decodeDirMetadata('etc', dirLine('a/b', fields) + '\n', 'etc/.pacha')).toThrow(/etc\/\.pacha line 1: bad name/);
    expect(() => decodeDirMetadata('etc', dirLine('..', fields) + '\n', 'etc/.pacha')).toThrow(/bad name/);
  });

  it('encodes names git or isomorphic-git refuse, and pacha\'s own, reversibly', () => {
    for (const n of ['.git', '.GIT', '.gitmodules', 'git~1', 'back\\slash', '.git. ', '.pacha-name-41']) {
      expect(gitName(n, 2)).toMatch(/^\.pacha-name-[0-9a-f]+$/);
      expect(realName(gitName(n, 2))).toBe(n);
    }
    expect(gitName('normal.conf', 2)).toBe('normal.conf');
    expect(gitPath('.pacha/x', 1)).not.toMatch(/^\.pacha\//);
    expect(realPath(gitPath('.pacha/.git/x', 2))).toBe('.pacha/.git/x');
    // format 1 reserved .pacha at the top only, format 2 at every level
    expect(gitPath('srv/.pacha/x', 1)).toBe('srv/.pacha/x');
    expect(gitPath('srv/.pacha/x', 2)).toBe('srv/.pacha-name-2e7061636861/x');
    expect(realPath(gitPath('srv/.pacha/x', 2))).toBe('srv/.pacha/x');
  });

  it('the fast path order is byte order', () => {
    const paths = ['a/b', 'a.b', 'a', 'a-b', 'ä', 'z', '\uffff', '😀'];
    const bytes = [...paths].sort(comparePaths);
    expect([...paths].sort(pathComparator(paths))).toEqual(bytes);
    const plain = ['a/b', 'a.b', 'a', 'a-b', 'ä', 'z'];
    expect([...plain].sort(pathComparator(plain))).toEqual([...plain].sort(comparePaths));
  });

  it('writes the change summary once and carries the counts as data', () => {
    const counts = { added: 3, changed: 1, deleted: 0, metadataOnly: 2 };
    const msg = snapshotMessage(counts, 'web1', 'nightly: 1 added, 2 changed, 3 deleted, 4 metadata-only');
    expect(msg.split('\n')[0]).toBe(summaryLine(counts));
    expect(msg.split('\n')[0]).toBe('3 added, 1 changed, 0 deleted, 2 metadata-only');
    // a note that looks like a summary does not fool the reader
    expect(snapshotTrailers(msg)).toEqual({ host: 'web1', counts });
    // a commit written before the counts were carried as data has none
    expect(snapshotTrailers('3 added, 1 changed, 0 deleted, 2 metadata-only\n\nPacha-Host: old\n')).toEqual({ host: 'old', counts: null });
  });
});

describe('ignoreMatcher', () => {
  it('matches base names anywhere and whole host paths', () => {
    const m = ignoreMatcher(['*.swp', '*~', '/etc/secret/**', 'var/cache/*']);
    expect(m('/etc/.x.swp')).toBe(true);
    expect(m('/etc/nginx/nginx.conf~')).toBe(true);
    expect(m('/etc/secret/a/b')).toBe(true);
    expect(m('/var/cache/x')).toBe(true);
    expect(m('/var/cache/x/y')).toBe(false);
    expect(m('/etc/nginx/nginx.conf')).toBe(false);
    expect(m('/etc/swp')).toBe(false);
    expect(ignoreMatcher([])('/etc/a.swp')).toBe(false);
  });
});
