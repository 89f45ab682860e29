import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { TargetChangedError, TargetTree } from '../src/rebuild/target-tree.ts';

// The restore's descriptor walk on its own: what it refuses, and that descriptors a batch still
// uses survive a trim while the others are closed.

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});
function tmp(): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'pacha-tt-'));
  dirs.push(d);
  return d;
}
const fdOpen = (fd: number) => {
  try {
    fs.fstatSync(fd);
    return true;
  } catch {
    return false;
  }
};

describe('TargetTree', () => {
  it('refuses a directory that became a symlink, another directory, or a file that became a symlink', () => {
    const root = tmp();
    fs.mkdirSync(path.join(root, 'a/b'), { recursive: true });
    fs.writeFileSync(path.join(root, 'a/f'), 'x');
    const st = fs.lstatSync(path.join(root, 'a/b'), { bigint: true });
    const tree = new TargetTree(root);
    try {
      tree.expect('/a/b', { dev: st.dev, ino: st.ino });
      fs.renameSync(path.join(root, 'a/b'), path.join(root, 'a/b.old'));
      fs.mkdirSync(path.join(root, 'a/b'));
      expect(() => tree.dir('/a/b')).toThrow(new TargetChangedError('/a/b', 'was replaced by another directory'));
      fs.rmdirSync(path.join(root, 'a/b'));
      fs.symlinkSync('..', path.join(root, 'a/b'));
      expect(() => tree.dir('/a/b')).toThrow(/\/a\/b: became a symlink since the plan/);
      fs.rmSync(path.join(root, 'a/f'));
      fs.symlinkSync('/etc/hostname', path.join(root, 'a/f'));
      expect(() => tree.openExisting('/a/f', undefined)).toThrow(/\/a\/f: became a symlink/);
      expect(() => tree.mkdir('/a/b')).toThrow(/\/a\/b: appeared since the plan/);
    } finally {
      tree.close();
    }
  });

  it('a new file is created in its verified directory, never through a symlink, and renamed only onto a free name', () => {
    const root = tmp();
    const outside = tmp();
    fs.mkdirSync(path.join(root, 'a'));
    const tree = new TargetTree(root);
    try {
      const dir = tree.dir('/a');
      // Moved away and replaced by a symlink after it was opened: the descriptor still names the directory it verified.
      fs.renameSync(path.join(root, 'a'), path.join(root, 'a.moved'));
      fs.symlinkSync(outside, path.join(root, 'a'));
      const fd = tree.createFile(dir, '.f.tmp', 0o600);
      fs.writeSync(fd, 'new');
      fs.closeSync(fd);
      expect(fs.readdirSync(outside)).toEqual([]);
      expect(() => tree.createFile(dir, '.f.tmp', 0o600)).toThrow(expect.objectContaining({ code: 'EEXIST' }));
      fs.symlinkSync(path.join(outside, 'x'), path.join(root, 'a.moved/.link'));
      expect(() => tree.createFile(dir, '.link', 0o600)).toThrow(expect.objectContaining({ code: 'EEXIST' }));
      tree.renameToFree(dir, '.f.tmp', 'f', '/a/f');
      expect(fs.readFileSync(path.join(root, 'a.moved/f'), 'utf8')).toBe('new');
      // Something appeared where the plan saw nothing: refused, and it is left as it is.
      fs.writeFileSync(path.join(root, 'a.moved/.g.tmp'), 'ours');
      fs.writeFileSync(path.join(root, 'a.moved/g'), 'theirs');
      expect(() => tree.renameToFree(dir, '.g.tmp', 'g', '/a/g')).toThrow(new TargetChangedError('/a/g', 'appeared'));
      expect(fs.readFileSync(path.join(root, 'a.moved/g'), 'utf8')).toBe('theirs');
      expect(fs.readFileSync(path.join(root, 'a.moved/.g.tmp'), 'utf8')).toBe('ours');
    } finally {
      tree.close();
    }
  });

  it('a trim closes what no batch uses and keeps what one does; forgotten descriptors live until then', () => {
    const root = tmp();
    for (let i = 0; i < 600; i++) fs.mkdirSync(path.join(root, `d${i}`));
    const tree = new TargetTree(root);
    try {
      const handles = Array.from({ length: 600 }, (_, i) => tree.dir(`/d${i}`));
      const inUse = handles[7];
      tree.forget('/d8');
      expect(fdOpen(handles[8].fd)).toBe(true); // still named by a pending file, maybe
      tree.trim([inUse]);
      expect(fdOpen(inUse.fd)).toBe(true);
      expect(fs.readdirSync(inUse.at(''))).toEqual([]);
      // Used again: opened and verified again.
      const again = tree.dir('/d1');
      expect(fs.statSync(again.at('')).ino).toBe(fs.statSync(path.join(root, 'd1')).ino);
      expect(tree.dir('/d7')).toBe(inUse);
    } finally {
      tree.close();
    }
  });
});
