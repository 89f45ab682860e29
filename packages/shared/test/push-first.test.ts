import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { takeSnapshot } from '../src/snapshot/engine.ts';
import { pushSnapshots } from '../src/push/push.ts';
import { LocalTransport } from '../src/transport/local.ts';
import { masterHostPaths } from '../src/master-tree.ts';
import type { Logger } from '../src/log.ts';
import { fsck, gitIn, packFiles } from '@pacha/test-support/push';
import { snapHost, type SnapHost } from './snapshot-helpers.ts';

// The first push of a first snapshot sends the snapshot's own packs as it recorded them
// (snapshot/first-packs.ts), without walking its trees; anything else selects objects as always.
// Every case ends with the master complete: the same objects as the host, git fsck --strict.

const cleanups: (() => void)[] = [];
afterEach(() => {
  for (const c of cleanups.splice(0)) c();
});

function setup(): { h: SnapHost; master: string; hostsPath: string } {
  const hostsPath = fs.mkdtempSync(path.join(os.tmpdir(), 'pacha-first-master-'));
  const h = snapHost({ 'pacha.watch': '/srv/app', 'pacha.host': 'file://', 'pacha.hosts.path': hostsPath });
  cleanups.push(() => h.cleanup(), () => fs.rmSync(hostsPath, { recursive: true, force: true }));
  const app = h.p('/srv/app');
  fs.mkdirSync(path.join(app, 'd'), { recursive: true });
  for (let i = 0; i < 300; i++) fs.writeFileSync(path.join(app, 'd', `f${i}.conf`), `key${i} = ${'v'.repeat(i)}\n`);
  // Over 4 MiB: a pack of its own, so the first snapshot writes two.
  fs.writeFileSync(path.join(app, 'big.bin'), Buffer.alloc(5 * 1024 * 1024, 'b'));
  return { h, master: masterHostPaths(hostsPath, h.name).repo, hostsPath };
}

function debugLog(): Logger & { lines: string[] } {
  const lines: string[] = [];
  const rec = (m: string) => lines.push(m);
  return { verbose: false, lines, error: rec, warn: rec, info: rec, debug: rec, progress() {} };
}

async function push(h: SnapHost, hostsPath: string): Promise<string[]> {
  const log = debugLog();
  const env = h.env2();
  await pushSnapshots({ config: env.config, state: env.state, log }, { transport: new LocalTransport(`file://${hostsPath}`) });
  return log.lines;
}

const objects = (g: string) => gitIn(g, ['rev-list', '--objects', 'main']).split('\n').sort().join('\n');
const packsOf = (g: string) => packFiles(g).filter((n) => n.startsWith('pack-'));
const record = (h: SnapHost) => path.join(h.env2().state.dir, 'first-packs.json');

describe('the first push of a first snapshot', () => {
  it('sends the snapshot\'s packs as they are, and the master holds every object', async () => {
    const { h, master, hostsPath } = setup();
    const r = await takeSnapshot(h.env2());
    const rec = JSON.parse(fs.readFileSync(record(h), 'utf8')) as { commit: string; packs: { name: string }[] };
    expect(rec.commit).toBe(r.commit);
    expect(rec.packs.length).toBe(2);
    const lines = await push(h, hostsPath);
    expect(lines).toContain("sending the first snapshot's 2 pack(s) as they are");
    // The same packs, by name (checksum), on both sides.
    expect(packsOf(master)).toEqual(packsOf(h.repo()));
    expect(objects(master)).toBe(objects(h.repo()));
    fsck(master);
  });

  it('is forgotten by the next snapshot, whose push selects what changed', async () => {
    const { h, master, hostsPath } = setup();
    await takeSnapshot(h.env2());
    await push(h, hostsPath);
    fs.writeFileSync(h.p('/srv/app/d/f1.conf'), 'changed\n');
    await takeSnapshot(h.env2());
    expect(fs.existsSync(record(h))).toBe(false);
    const lines = await push(h, hostsPath);
    expect(lines.some((l) => l.startsWith("sending the first snapshot's"))).toBe(false);
    expect(objects(master)).toBe(objects(h.repo()));
    fsck(master);
  });

  it('is not used when it does not describe the head: two snapshots before the first push', async () => {
    const { h, master, hostsPath } = setup();
    await takeSnapshot(h.env2());
    fs.writeFileSync(h.p('/srv/app/d/f2.conf'), 'changed\n');
    await takeSnapshot(h.env2());
    const lines = await push(h, hostsPath);
    expect(lines.some((l) => l.startsWith("sending the first snapshot's"))).toBe(false);
    expect(objects(master)).toBe(objects(h.repo()));
    fsck(master);
  });

  it('is not written when the repository already held objects, and a record naming other packs is ignored', async () => {
    const { h, master, hostsPath } = setup();
    await takeSnapshot(h.env2());
    const kept = fs.readFileSync(record(h), 'utf8');
    // A repository whose branch was lost: its objects are there, so a snapshot writes fewer.
    fs.rmSync(path.join(h.repo(), 'refs/heads/main'));
    fs.rmSync(h.env2().state.statCache, { force: true });
    fs.rmSync(record(h));
    fs.writeFileSync(h.p('/srv/app/d/f3.conf'), 'new content\n');
    await takeSnapshot(h.env2());
    expect(fs.existsSync(record(h))).toBe(false);
    // The old record names the first commit, not this head: ignored.
    fs.writeFileSync(record(h), kept);
    const lines = await push(h, hostsPath);
    expect(lines.some((l) => l.startsWith("sending the first snapshot's"))).toBe(false);
    expect(objects(master)).toBe(objects(h.repo()));
    fsck(master);
  });
});
