import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { PackReader } from '../src/git/pack-reader.ts';
import { hashObject } from '../src/git/objects.ts';
import { Repository } from '../src/git/repository.ts';
import { buildPack } from '../src/push/pack-build.ts';
import { commitsAfter, selectObjects } from '../src/push/pack-select.ts';
import { gitIn, makePushFixture, type PushFixture } from '@pacha/test-support/push';

// The pack reader against packs native git wrote (with deltas), and the pack writer against
// native git's own reading of what it wrote.

let fx: PushFixture | undefined;
afterEach(() => {
  fx?.cleanup();
  fx = undefined;
});

function repacked(): PushFixture {
  const f = makePushFixture();
  for (let v = 0; v < 5; v++) f.snapshot(40, v);
  gitIn(f.state.repo, ['repack', '-a', '-d', '-f', '-q', '--depth=20', '--window=50']);
  gitIn(f.state.repo, ['prune-packed']);
  return f;
}

describe('pack reader', () => {
  it('reads every object of a git-written pack, deltas included, exactly as git does', async () => {
    fx = repacked();
    const dir = path.join(fx.state.repo, 'objects/pack');
    const packName = fs.readdirSync(dir).find((n) => n.endsWith('.pack'))!;
    const r = new PackReader(path.join(dir, packName));
    try {
      const verbose = gitIn(fx.state.repo, ['verify-pack', '-v', path.join(dir, packName)]);
      expect(verbose).toMatch(/chain length = \d+: \d+ objects?/); // the pack really has deltas
      expect(await r.verify()).toEqual([]);
      const oids = Array.from({ length: r.count }, (_, i) => r.index.oidAt(i));
      const types = execFileSync('git', ['--git-dir', fx.state.repo, 'cat-file', '--batch-check=%(objecttype)'], { input: oids.join('\n') + '\n', encoding: 'utf8' }).trim().split('\n');
      let n = 0;
      for (const [i, oid] of oids.entries()) {
        const obj = r.readAt(r.index.offsetAt(r.find(oid)));
        expect(hashObject(obj.type, obj.content), oid).toBe(oid);
        expect(obj.type).toBe(types[i]);
        n++;
      }
      expect(n).toBe(Number(gitIn(fx.state.repo, ['count-objects', '-v']).match(/in-pack: (\d+)/)![1]));
      expect(r.find('0'.repeat(40))).toBe(-1);
    } finally {
      r.close();
    }
  });
});

describe('pack writer', () => {
  it('writes a pack whose index is byte-identical to the one git index-pack computes', async () => {
    fx = repacked();
    const store = new Repository(fx.state.repo);
    try {
      const head = store.readRef()!;
      const sel = selectObjects(store, commitsAfter(store, head, null, 'test'));
      const built = await buildPack(store, sel.objects, path.join(fx.root, 'out'));
      expect(built.objects).toBe(sel.objects.length);
      const gitIdx = path.join(fx.root, 'git.idx');
      execFileSync('git', ['index-pack', '-o', gitIdx, built.packFile], { stdio: 'ignore' });
      expect(fs.readFileSync(built.idxFile).equals(fs.readFileSync(gitIdx))).toBe(true);
      expect(path.basename(built.packFile)).toBe(`pack-${built.checksum}.pack`);
    } finally {
      store.close();
    }
  });

  it('selects only the objects a commit changed relative to its parent', () => {
    fx = makePushFixture();
    const first = fx.snapshot(100, 0);
    const second = fx.snapshot(100, 1, [{ path: '/etc/app/new/added.conf', type: 'file', content: 'new\n' }]);
    const store = new Repository(fx.state.repo);
    try {
      const sel = selectObjects(store, commitsAfter(store, second, first, 'test'));
      const expected = gitIn(fx.state.repo, ['rev-list', '--objects', second, `^${first}`]).trim().split('\n').map((l) => l.split(' ')[0]).sort();
      expect([...sel.objects].sort()).toEqual(expected);
    } finally {
      store.close();
    }
  });
});
