import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { pushSnapshots, type PushEnv } from '../src/push/push.ts';
import { LocalTransport } from '../src/transport/local.ts';
import { silentLogger, type Logger } from '../src/log.ts';
import { Repository } from '../src/git/repository.ts';
import { selectObjects, commitsAfter } from '../src/push/pack-select.ts';
import { buildPack } from '../src/push/pack-build.ts';
import { AuthError, ConnectionError, PachaError, HostKeyError, PermissionError, isTransient } from '../src/errors.ts';
import { faultyTransport } from '@pacha/test-support/faulty-transport';
import { fsck, gitIn, makePushFixture, masterHead, packFiles, type PushFixture } from '@pacha/test-support/push';

// Push over the Transport interface to a master host tree in a local folder. The SFTP targets
// (embedded master, OpenSSH) run the same protocol in packages/agent/test/push-sftp.test.ts.

let fx: PushFixture | undefined;
afterEach(() => {
  fx?.cleanup();
  fx = undefined;
});

function recordingLogger(): Logger & { lines: string[] } {
  const lines: string[] = [];
  const rec = (l: string) => (m: string) => lines.push(`${l}: ${m}`);
  return { verbose: false, lines, error: rec('error'), warn: rec('warn'), info: rec('info'), debug: rec('debug'), progress() {} };
}

const env = (f: PushFixture, log: Logger = silentLogger): PushEnv => ({ config: f.config, state: f.state, log });
const fast = { attempts: 3, baseMs: 5, maxMs: 20 };

describe('push to a local-folder master', () => {
  it('creates the repository, sends everything, and the master passes git fsck --strict', async () => {
    fx = makePushFixture();
    const head = fx.snapshot(60);
    const r = await pushSnapshots(env(fx));
    expect(r.commits).toBe(1);
    expect(r.remoteHead).toBe(head);
    expect(masterHead(fx.masterRepo)).toBe(head);
    expect(fs.readFileSync(path.join(fx.masterRepo, 'HEAD'), 'utf8')).toBe('ref: refs/heads/main\n');
    fsck(fx.masterRepo);
    // Every object of the local repository arrived: the same list on both sides.
    const all = (g: string) => gitIn(g, ['rev-list', '--objects', 'main']).split('\n').sort().join('\n');
    expect(all(fx.masterRepo)).toBe(all(fx.state.repo));
    expect(Object.keys(r.phases).sort()).toEqual(['connect', 'negotiate', 'pack', 'ref', 'upload']);
    // One pack + idx, nothing temporary left, lock released.
    expect(packFiles(fx.masterRepo).filter((n) => n.startsWith('pack-')).length).toBe(2);
    expect(packFiles(fx.masterRepo).filter((n) => !n.startsWith('pack-'))).toEqual([]);
    expect(fs.existsSync(path.join(fx.masterRepo, 'pacha-push.lock'))).toBe(false);
  });

  it('sends nothing the second time, and only what changed after that', async () => {
    fx = makePushFixture();
    fx.snapshot(200, 0);
    await pushSnapshots(env(fx));
    const before = packFiles(fx.masterRepo);
    const again = await pushSnapshots(env(fx));
    expect(again).toMatchObject({ commits: 0, objects: 0, bytes: 0 });
    expect(packFiles(fx.masterRepo)).toEqual(before);

    const head = fx.snapshot(200, 1); // one file changed: /etc/app/d0/f0.conf, plus the metadata
    const r = await pushSnapshots(env(fx));
    expect(r.commits).toBe(1);
    // commit + root tree + etc + app + d0 + f0 blob (the metadata line is unchanged: same size)
    expect(r.objects).toBe(6);
    expect(masterHead(fx.masterRepo)).toBe(head);
    fsck(fx.masterRepo);
    expect(gitIn(fx.masterRepo, ['rev-list', '--count', 'main']).trim()).toBe('2');
  });

  it('sends the local pack as it is when it holds exactly what the master lacks', async () => {
    fx = makePushFixture();
    fx.snapshot(50, 0);
    // The fixture writes loose objects: git packs them (each repack packs only the loose ones).
    gitIn(fx.state.repo, ['repack', '-d', '-q']);
    const local = () => packFiles(fx!.state.repo).filter((n) => n.startsWith('pack-'));
    const first = local();
    await pushSnapshots(env(fx));
    // The same pack (same name: same checksum) and the same bytes, not a copy of its entries.
    expect(packFiles(fx.masterRepo).filter((n) => n.startsWith('pack-'))).toEqual(first);
    for (const n of first) expect(fs.readFileSync(path.join(fx.masterRepo, 'objects/pack', n)).equals(fs.readFileSync(path.join(fx.state.repo, 'objects/pack', n)))).toBe(true);
    fx.snapshot(50, 1);
    gitIn(fx.state.repo, ['repack', '-d', '-q']);
    const second = local().filter((n) => !first.includes(n));
    await pushSnapshots(env(fx));
    expect(packFiles(fx.masterRepo).filter((n) => n.startsWith('pack-')).sort()).toEqual([...first, ...second].sort());
    fsck(fx.masterRepo);
  });

  it('sends several snapshots taken while the master was away, all in one push', async () => {
    fx = makePushFixture();
    fx.snapshot(30, 0);
    await pushSnapshots(env(fx));
    const down = faultyTransport(new LocalTransport(), [{ when: 'before', action: () => { throw new ConnectionError('connect ECONNREFUSED 127.0.0.1:22'); } }]);
    const heads = [fx.snapshot(30, 1), fx.snapshot(30, 2), fx.snapshot(31, 3)];
    await expect(pushSnapshots(env(fx), { transport: down, retry: fast })).rejects.toThrow(/ECONNREFUSED/);
    const r = await pushSnapshots(env(fx));
    expect(r.commits).toBe(3);
    expect(r.remoteHead).toBe(heads[2]);
    expect(r.bytes).toBeGreaterThan(0);
    expect(masterHead(fx.masterRepo)).toBe(heads[2]);
    expect(gitIn(fx.masterRepo, ['rev-list', 'main']).trim().split('\n').slice(0, 3).reverse()).toEqual(heads);
    fsck(fx.masterRepo);
    // The library writes no status file: the agent records the result (status-files.test.ts).
    expect(fs.existsSync(fx.state.status)).toBe(false);
  });

  it('copies stored entries from local packs and resolves deltas of a repacked repository', async () => {
    fx = makePushFixture();
    for (let v = 0; v < 4; v++) fx.snapshot(80, v);
    gitIn(fx.state.repo, ['repack', '-a', '-d', '-f', '-q', '--depth=10', '--window=50']);
    gitIn(fx.state.repo, ['prune-packed']);
    const store = new Repository(fx.state.repo);
    const head = store.readRef()!;
    const sel = selectObjects(store, commitsAfter(store, head, null, 'test'));
    const built = await buildPack(store, sel.objects, path.join(fx.root, 'packtest'));
    store.close();
    expect(built.copied).toBeGreaterThan(0); // whole objects reused as stored
    expect(built.deflated).toBeGreaterThan(0); // deltas resolved (git repack made some)
    const out = gitIn(fx.state.repo, ['verify-pack', '-v', built.idxFile]);
    expect(out).toMatch(/: ok/);
    const r = await pushSnapshots(env(fx));
    expect(r.commits).toBe(4);
    fsck(fx.masterRepo);
  });

  it('refuses a master whose history this host does not continue, and changes nothing', async () => {
    fx = makePushFixture();
    fx.snapshot(10, 0);
    await pushSnapshots(env(fx));
    // A foreign commit on the master (another host writing under this name).
    const other = makePushFixture('web1');
    try {
      const foreign = other.snapshot(5, 9);
      gitIn(other.state.repo, ['push', '-q', fx.masterRepo, `${foreign}:refs/heads/main`, '--force']);
      fx.snapshot(10, 1);
      const packs = packFiles(fx.masterRepo);
      const err = await pushSnapshots(env(fx), { retry: fast }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(PachaError);
      expect((err as Error).message).toMatch(/a commit this host does not have/);
      expect(masterHead(fx.masterRepo)).toBe(foreign);
      expect(packFiles(fx.masterRepo)).toEqual(packs);
    } finally {
      other.cleanup();
    }
  });

  it('refuses when the master is ahead of (not an ancestor of) the local head', async () => {
    fx = makePushFixture();
    const first = fx.snapshot(10, 0);
    const second = fx.snapshot(10, 1);
    await pushSnapshots(env(fx));
    gitIn(fx.state.repo, ['update-ref', 'refs/heads/main', first]); // local history rewound
    fx.snapshot(10, 2);
    await expect(pushSnapshots(env(fx))).rejects.toThrow(/not an ancestor/);
    expect(masterHead(fx.masterRepo)).toBe(second);
  });

  it('waits for a fresh lock of another machine and takes over a stale one with a warning', async () => {
    fx = makePushFixture();
    const head = fx.snapshot(10);
    fs.mkdirSync(fx.masterRepo, { recursive: true });
    const lock = path.join(fx.masterRepo, 'pacha-push.lock');
    const holder = { host: 'web1', pid: 999999, time: new Date().toISOString(), machine: 'elsewhere' };
    fs.writeFileSync(lock, JSON.stringify(holder));
    await expect(pushSnapshots(env(fx))).rejects.toThrow(/another push .* is in progress \(pid 999999 on elsewhere/);
    expect(masterHead(fx.masterRepo)).toBe(null);
    fs.writeFileSync(lock, JSON.stringify({ ...holder, time: new Date(Date.now() - 11 * 60_000).toISOString() }));
    const log = recordingLogger();
    await pushSnapshots(env(fx, log));
    expect(log.lines.join('\n')).toMatch(/warn: taking over stale push lock/);
    expect(masterHead(fx.masterRepo)).toBe(head);
    expect(fs.existsSync(lock)).toBe(false);
  });

  it('retries transient failures with backoff but not refusals', async () => {
    fx = makePushFixture();
    const head = fx.snapshot(10);
    const local = new LocalTransport();
    // The first two renames fail as a lost connection would.
    const reset = () => { throw new ConnectionError('read ECONNRESET'); };
    const flaky = faultyTransport(local, [1, 2].map((nth) => ({ op: 'rename' as const, nth, when: 'before' as const, action: reset })));
    const log = recordingLogger();
    const r = await pushSnapshots(env(fx, log), { transport: flaky, retry: fast });
    expect(r.remoteHead).toBe(head);
    expect(log.lines.filter((l) => l.includes('retry')).length).toBe(2);
    fsck(fx.masterRepo);
    // The interrupted attempts' uploads were cleared by the next attempt.
    expect(packFiles(fx.masterRepo).filter((n) => n.startsWith('tmp_'))).toEqual([]);

    // The transport decides what is transient; retry goes by the kind alone.
    expect(isTransient(new ConnectionError('the master stopped answering'))).toBe(true);
    expect(isTransient(new AuthError('the master refused the key'))).toBe(false);
    expect(isTransient(new PermissionError('Permission denied'))).toBe(false);
    expect(isTransient(new HostKeyError('host key changed', 'SHA256:x', 'ssh-ed25519', ''))).toBe(false);
    expect(isTransient(Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' }))).toBe(false);

    fx.snapshot(10, 1);
    let calls = 0;
    const denied = faultyTransport(local, [
      { op: 'createExclusive', when: 'before', action: () => void calls++ }, // once per attempt (the lock)
      { op: 'upload', when: 'before', action: () => { throw new PermissionError('upload: Permission denied'); } },
    ]);
    await expect(pushSnapshots(env(fx), { transport: denied, retry: fast })).rejects.toThrow(/Permission denied/);
    expect(calls).toBe(1);
    expect(masterHead(fx.masterRepo)).toBe(head);
  });

  it('after a completed push, the next neither looks for leftovers nor for the repository; the ref goes up with the packs and is renamed last', async () => {
    fx = makePushFixture();
    fx.snapshot(10);
    const local = new LocalTransport();
    await pushSnapshots(env(fx), { transport: local });
    const head = fx.snapshot(10, 1);
    const lists: string[] = [];
    const renames: string[] = [];
    const t = faultyTransport(local, [
      { op: 'list', when: 'before', action: () => void lists.push('list') },
      { op: 'rename', when: 'after', action: () => void renames.push(fs.readdirSync(path.join(fx!.masterRepo, 'refs/heads')).join(',')) },
    ]);
    await pushSnapshots(env(fx), { transport: t, afterCompletedPush: true });
    expect(masterHead(fx.masterRepo)).toBe(head);
    expect(lists).toEqual([]);
    // pack, index, ref: the ref's temporary file was there (git ignores a dot name) until the last rename.
    expect(renames).toHaveLength(3);
    expect(renames[0]).toMatch(/^\.main\.tmp-/m);
    expect(renames[2]).toBe('main');
    fsck(fx.masterRepo);
    // Without it (a push that may follow a failed one), the leftovers are looked for.
    fx.snapshot(10, 2);
    await pushSnapshots(env(fx), { transport: t });
    expect(lists.length).toBeGreaterThan(0);
    fsck(fx.masterRepo);
  });

  it('a first push asks the master in few rounds: what does not depend on an answer goes together', async () => {
    fx = makePushFixture();
    const head = fx.snapshot(20);
    // The longest chain of requests each sent after the one before it was answered (a round trip
    // each over SSH), whatever the transport does in one request.
    let answered = 0;
    let rounds = 0;
    const local = new LocalTransport();
    const t = new Proxy(local, {
      get(target, key, receiver) {
        const v: unknown = Reflect.get(target, key, receiver);
        if (typeof v !== 'function' || key === 'close') return v;
        return async (...args: unknown[]) => {
          const depth = answered + 1;
          try {
            return await (v as (...a: unknown[]) => Promise<unknown>).apply(target, args);
          } finally {
            answered = Math.max(answered, depth);
            rounds = Math.max(rounds, depth);
          }
        };
      },
    });
    await pushSnapshots(env(fx), { transport: t });
    expect(masterHead(fx.masterRepo)).toBe(head);
    fsck(fx.masterRepo);
    // lock (refused: no folder), folder, lock; the repository (folders, config and HEAD's
    // temporary file together, then HEAD) alongside the ref's read, no leftovers looked for in a
    // folder just made; upload; checks and the ref read again; pack, index and ref renamed; unlock.
    expect(rounds).toBeLessThanOrEqual(12);
  });

  it("reads the master's ref from packed-refs when the loose ref is gone, and ignores packed-refs beside a loose ref", async () => {
    fx = makePushFixture();
    fx.snapshot(10);
    await pushSnapshots(env(fx));
    // git pack-refs on the master: the ref lives in packed-refs only.
    gitIn(fx.masterRepo, ['pack-refs', '--all', '--prune']);
    expect(fs.existsSync(path.join(fx.masterRepo, 'refs/heads/main'))).toBe(false);
    const head = fx.snapshot(10, 1);
    const r = await pushSnapshots(env(fx));
    expect(r.commits).toBe(1);
    expect(masterHead(fx.masterRepo)).toBe(head);
    // A loose ref again (the push wrote one); packed-refs now unreadable: not asked about.
    fs.rmSync(path.join(fx.masterRepo, 'packed-refs'));
    fs.mkdirSync(path.join(fx.masterRepo, 'packed-refs'));
    expect(await pushSnapshots(env(fx))).toMatchObject({ commits: 0, remoteHead: head });
  });

  it('has nothing to push before the first snapshot', async () => {
    fx = makePushFixture();
    const r = await pushSnapshots(env(fx));
    expect(r).toMatchObject({ commits: 0, remoteHead: null });
    expect(fs.existsSync(fx.masterRepo)).toBe(false);
  });
});
