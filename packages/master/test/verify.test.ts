import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';
import { afterEach, describe, expect, it } from 'vitest';
import { runMaster } from '@pacha/test-support/cli';
import { pushSnapshots } from '@pacha/shared/push/push';
import { silentLogger } from '@pacha/shared/log';
import { gitIn, makePushFixture, packFiles, type PushFixture } from '@pacha/test-support/push';

// `pacha-master verify`: a sound repository passes; each kind of damage is found and named,
// and native git agrees that it is damage.

let fx: PushFixture | undefined;
afterEach(() => {
  fx?.cleanup();
  fx = undefined;
});

async function pushed(snapshots = 2): Promise<PushFixture> {
  const f = makePushFixture('web1');
  for (let v = 0; v < snapshots; v++) {
    f.snapshot(20, v);
    await pushSnapshots({ config: f.config, state: f.state, log: silentLogger });
  }
  return f;
}

const verify = (f: PushFixture, host?: string) => runMaster(['verify', ...(host ? [host] : []), '--hosts-path', f.hostsPath]);

function gitFsckFails(repo: string): boolean {
  try {
    execFileSync('git', ['--git-dir', repo, 'fsck', '--full', '--strict'], { stdio: 'ignore' });
    return false;
  } catch {
    return true;
  }
}

describe('pacha-master verify', () => {
  it('passes a repository written by pushes (and a host that never pushed)', async () => {
    fx = await pushed();
    fs.mkdirSync(path.join(fx.hostsPath, 'fresh', 'repo'), { recursive: true });
    fs.writeFileSync(path.join(fx.hostsPath, 'fresh', 'repo', 'HEAD'), 'ref: refs/heads/main\n');
    const r = await verify(fx);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/web1: ok \(\d+ objects reachable from [0-9a-f]{12}, 2 pack\(s\)\)/);
    expect(r.stdout).toMatch(/fresh: ok/);
    const json = JSON.parse((await runMaster(['verify', 'web1', '--json', '--hosts-path', fx.hostsPath])).stdout);
    expect(json.ok).toBe(true);
    // 2 commits; objects counted = everything git lists as reachable
    expect(json.hosts[0].objects).toBe(gitIn(fx.masterRepo, ['rev-list', '--objects', 'main']).trim().split('\n').length);
  });

  it('finds a flipped byte in a pack', async () => {
    fx = await pushed();
    const pack = packFiles(fx.masterRepo).find((n) => n.endsWith('.pack'))!;
    const file = path.join(fx.masterRepo, 'objects/pack', pack);
    const buf = fs.readFileSync(file);
    buf[Math.floor(buf.length / 2)] ^= 0xff;
    fs.writeFileSync(file, buf);
    const r = await verify(fx, 'web1');
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(new RegExp(`web1: DAMAGED: .*${pack}: pack checksum does not match its content`));
    expect(r.stderr).toMatch(/1 of 1 host repositories are damaged: web1/);
    expect(gitFsckFails(fx.masterRepo)).toBe(true);
  });

  it('finds objects missing after a pack was lost, and names what refers to them', async () => {
    fx = await pushed();
    // The second push's pack holds the changed file; remove the newest pack.
    const dir = path.join(fx.masterRepo, 'objects/pack');
    const newest = packFiles(fx.masterRepo).filter((n) => n.endsWith('.pack')).map((n) => [fs.statSync(path.join(dir, n)).mtimeMs, n] as const).sort((a, b) => b[0] - a[0])[0][1];
    fs.rmSync(path.join(dir, newest));
    fs.rmSync(path.join(dir, newest.replace(/\.pack$/, '.idx')));
    const r = await verify(fx, 'web1');
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/web1: DAMAGED: object [0-9a-f]{40} \(commit of refs\/heads\/main\) is missing/);
    expect(gitFsckFails(fx.masterRepo)).toBe(true);
  });

  it('finds a ref that names no commit, a bad HEAD and an idx without pack', async () => {
    fx = await pushed(1);
    fs.writeFileSync(path.join(fx.masterRepo, 'refs/heads/main'), 'f'.repeat(40) + '\n');
    fs.writeFileSync(path.join(fx.masterRepo, 'HEAD'), 'ref: refs/heads/master\n');
    fs.writeFileSync(path.join(fx.masterRepo, 'objects/pack', `pack-${'a'.repeat(40)}.idx`), 'junk');
    const r = await verify(fx, 'web1');
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/HEAD: "ref: refs\/heads\/master", expected "ref: refs\/heads\/main"/);
    expect(r.stdout).toMatch(/index without its pack/);
    expect(r.stdout).toMatch(/object f{40} \(commit of refs\/heads\/main\) is missing/);
  });

  it('finds a loose object whose content does not hash to its name', async () => {
    fx = await pushed(1);
    const head = fs.readFileSync(path.join(fx.masterRepo, 'refs/heads/main'), 'utf8').trim();
    const blob = gitIn(fx.masterRepo, ['rev-parse', `${head}:etc/app/d0/f0.conf`]).trim();
    // Drop the packs and write every reachable object loose, then tamper with one blob.
    const objs = gitIn(fx.masterRepo, ['rev-list', '--objects', 'main']).trim().split('\n').map((l) => l.split(' ')[0]);
    const contents = objs.map((o) => [o, gitIn(fx!.masterRepo, ['cat-file', '-t', o]).trim(), execFileSync('git', ['--git-dir', fx!.masterRepo, 'cat-file', gitIn(fx!.masterRepo, ['cat-file', '-t', o]).trim(), o])] as const);
    for (const n of packFiles(fx.masterRepo)) fs.rmSync(path.join(fx.masterRepo, 'objects/pack', n));
    for (const [o, type, content] of contents) {
      const body = o === blob ? Buffer.from('tampered\n') : content;
      fs.mkdirSync(path.join(fx.masterRepo, 'objects', o.slice(0, 2)), { recursive: true });
      fs.writeFileSync(path.join(fx.masterRepo, 'objects', o.slice(0, 2), o.slice(2)), zlib.deflateSync(Buffer.concat([Buffer.from(`${type} ${body.length}\0`), body])));
    }
    const r = await verify(fx, 'web1');
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(new RegExp(`object ${blob} \\(blob of commit [0-9a-f]{12}:etc/app/d0/f0.conf\\) does not hash to its id`));
    expect(gitFsckFails(fx.masterRepo)).toBe(true);
  });
});
