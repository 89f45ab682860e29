import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import ssh2 from 'ssh2';
import type { SFTPWrapper } from 'ssh2';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { hashObject } from '@pacha/shared/git/objects';
import { serializeTree } from '@pacha/shared/git/tree';
import { makeTestHost, type TestHost } from '@pacha/test-support/host';
import { embeddedTarget, startMaster, writeAgentConfig, type MasterHandle } from '@pacha/test-support/master';
import { runMaster } from '@pacha/test-support/cli';
import { commitBytes, craftPack } from '@pacha/test-support/craft-pack';

// The embedded master against a hostile host: each defect class of issue 11, written as the
// attacker does it, with raw SFTP requests (ssh2's client) and the host's own valid key, on two
// channels where that matters. After every attack: native `git fsck --full --strict` passes on
// the master's repository, main is unchanged or moved forward, the genuine host's next push
// lands and a rebuild --at the first snapshot restores it.

const HOST = 'victim';
const R = `/pacha/hosts/${HOST}/repo`;
const { OPEN_MODE } = ssh2.utils.sftp;
const WRITE = OPEN_MODE.WRITE | OPEN_MODE.CREAT | OPEN_MODE.TRUNC;

let m: MasterHandle;
let base: string;
let genuine: TestHost;
let repo: string;
let first: string;
let conn: ssh2.Client;
let chanA: SFTPWrapper;
let chanB: SFTPWrapper;
let mainBefore: string;

const git = (...args: string[]) => execFileSync('git', ['--git-dir', repo, ...args], { encoding: 'utf8', stdio: ['pipe', 'pipe', 'pipe'] }).trim();
const mainOf = () => fs.readFileSync(path.join(repo, 'refs/heads/main'), 'utf8').trim();
const localRepo = () => genuine.p('/var/lib/pacha/repo');

// Raw SFTP, one promise per request.
type Sftp = SFTPWrapper;
const call = <T>(fn: (cb: (err: Error | null | undefined, v: T) => void) => void) =>
  new Promise<T>((resolve, reject) => fn((err, v) => (err ? reject(err) : resolve(v))));
const open = (s: Sftp, p: string, flags: number) => call<Buffer>((cb) => s.open(p, flags, cb));
const write = (s: Sftp, h: Buffer, data: Buffer, pos = 0) => call<void>((cb) => s.write(h, data, 0, data.length, pos, (e) => cb(e, undefined)));
const close = (s: Sftp, h: Buffer) => call<void>((cb) => s.close(h, (e) => cb(e, undefined)));
const rename = (s: Sftp, a: string, b: string) => call<void>((cb) => s.rename(a, b, (e) => cb(e, undefined)));
const remove = (s: Sftp, p: string) => call<void>((cb) => s.unlink(p, (e) => cb(e, undefined)));
const setstat = (s: Sftp, p: string, attrs: ssh2.InputAttributes) => call<void>((cb) => s.setstat(p, attrs, (e) => cb(e, undefined)));
async function put(s: Sftp, p: string, data: Buffer): Promise<void> {
  const h = await open(s, p, WRITE);
  for (let pos = 0; pos < data.length; pos += 32 * 1024) await write(s, h, data.subarray(pos, pos + 32 * 1024), pos);
  await close(s, h);
}
const denied = { code: ssh2.utils.sftp.STATUS_CODE.PERMISSION_DENIED };
const failure = { code: ssh2.utils.sftp.STATUS_CODE.FAILURE };
const TEMP_LIMIT = 4 * 1024 * 1024;

async function snapshotAndPush(content: string): Promise<string> {
  fs.writeFileSync(genuine.p('/srv/app/a.conf'), content);
  let r = await genuine.pacha(['snapshot']);
  expect(r.code, r.stderr).toBe(0);
  r = await genuine.pacha(['push']);
  expect(r.code, r.stderr).toBe(0);
  return git('rev-parse', 'refs/heads/main');
}

/** A genuine snapshot taken locally but not pushed: its objects as one pack native git makes, and its id. */
async function futureSnapshot(content: string): Promise<{ commit: string; pack: Buffer; idx: Buffer; name: string }> {
  fs.writeFileSync(genuine.p('/srv/app/a.conf'), content);
  const r = await genuine.pacha(['snapshot']);
  expect(r.code, r.stderr).toBe(0);
  const commit = execFileSync('git', ['--git-dir', localRepo(), 'rev-parse', 'refs/heads/main'], { encoding: 'utf8' }).trim();
  const dir = fs.mkdtempSync(path.join(base, 'pack-'));
  const name = execFileSync('git', ['--git-dir', localRepo(), 'pack-objects', '-q', '--revs', path.join(dir, 'p')], { input: `${commit}\n^${mainOf()}\n`, encoding: 'utf8' }).trim();
  return { commit, pack: fs.readFileSync(path.join(dir, `p-${name}.pack`)), idx: fs.readFileSync(path.join(dir, `p-${name}.idx`)), name };
}

async function login(host: string): Promise<ssh2.Client> {
  const c = new ssh2.Client();
  await new Promise<void>((resolve, reject) => {
    c.once('error', reject);
    c.once('ready', () => resolve());
    c.connect({ host: '127.0.0.1', port: m.port, username: host, privateKey: fs.readFileSync(m.keyFor(host)) });
  });
  return c;
}

async function connect(): Promise<void> {
  conn = await login(HOST);
  chanA = await call<SFTPWrapper>((cb) => conn.sftp(cb));
  chanB = await call<SFTPWrapper>((cb) => conn.sftp(cb));
}

beforeAll(async () => {
  base = fs.mkdtempSync(path.join(os.tmpdir(), 'pacha-hostile-'));
  fs.mkdirSync(path.join(base, 'master-tmp'), { recursive: true });
  // A small limit on temporary uploads (test 10); every genuine push here is far below it.
  m = await startMaster({ hosts: [HOST], tmpDir: base, env: { TMPDIR: path.join(base, 'master-tmp') }, args: ['--max-host-temp', `${TEMP_LIMIT}`, '--verbose'] });
  genuine = makeTestHost({ name: HOST, tmpDir: base });
  fs.writeFileSync(genuine.p('/etc/passwd'), 'root:x:0:0:root:/root:/bin/sh\n');
  fs.writeFileSync(genuine.p('/etc/group'), 'root:x:0:\n');
  writeAgentConfig(genuine, embeddedTarget(m));
  fs.mkdirSync(genuine.p('/srv/app'), { recursive: true });
  expect((await genuine.pacha(['watch', '/srv/app'])).code).toBe(0);
  repo = path.join(m.hostDir(HOST), 'repo');
  first = await snapshotAndPush('v1\n');
  await snapshotAndPush('v2\n');
  await connect();
}, 60_000);

afterAll(async () => {
  conn?.end();
  await m?.stop();
  fs.rmSync(base, { recursive: true, force: true });
});

let counter = 0;
/** After every attack: fsck, main unchanged or forward, the genuine push and a rebuild --at the first snapshot. */
afterEach(async () => {
  git('fsck', '--full', '--strict');
  const now = mainOf();
  if (now !== mainBefore) expect(git('rev-list', '--first-parent', now).split('\n')).toContain(mainBefore);
  const head = await snapshotAndPush(`genuine ${++counter}\n`);
  expect(mainOf()).toBe(head);
  const fresh = makeTestHost({ name: HOST, tmpDir: base });
  fs.writeFileSync(fresh.p('/etc/passwd'), 'root:x:0:0:root:/root:/bin/sh\n');
  fs.writeFileSync(fresh.p('/etc/group'), 'root:x:0:\n');
  writeAgentConfig(fresh, embeddedTarget(m));
  const r = await fresh.pacha(['rebuild', HOST, '--yes', '--no-packages', '--at', first]);
  expect(r.code, r.stdout + r.stderr).toBe(0);
  expect(fs.readFileSync(fresh.p('/srv/app/a.conf'), 'utf8')).toBe('v1\n');
  fresh.cleanup();
  git('fsck', '--full', '--strict');
}, 60_000);

function remember(): void {
  mainBefore = mainOf();
}

describe('the embedded master against a hostile host (issue 11)', () => {
  it('1. no handle keeps writing to a file once it is the ref or an object', async () => {
    remember();
    // The ref: write the current main to a temp file, rename it onto main (accepted), then keep writing.
    const h = await open(chanA, `${R}/refs/heads/.main.tmp-evil`, WRITE);
    await write(chanA, h, Buffer.from(`${mainBefore}\n`));
    await rename(chanA, `${R}/refs/heads/.main.tmp-evil`, `${R}/refs/heads/main`);
    await write(chanA, h, Buffer.from(`${first}\n`)).catch(() => undefined);
    await write(chanB, h, Buffer.from('0'.repeat(40) + '\n')).catch(() => undefined);
    await close(chanA, h).catch(() => undefined);
    expect(mainOf()).toBe(mainBefore);
    // An object: a genuine future snapshot's pack, placed, then overwritten through the open handle.
    const f = await futureSnapshot('future 1\n');
    const hp = await open(chanA, `${R}/objects/pack/tmp_pack_evil`, WRITE);
    await write(chanA, hp, f.pack);
    await put(chanB, `${R}/objects/pack/tmp_idx_evil`, f.idx);
    await rename(chanB, `${R}/objects/pack/tmp_pack_evil`, `${R}/objects/pack/pack-${f.name}.pack`);
    await rename(chanB, `${R}/objects/pack/tmp_idx_evil`, `${R}/objects/pack/pack-${f.name}.idx`);
    await put(chanB, `${R}/refs/heads/.main.tmp-b`, Buffer.from(`${f.commit}\n`));
    await rename(chanB, `${R}/refs/heads/.main.tmp-b`, `${R}/refs/heads/main`);
    await write(chanA, hp, Buffer.alloc(f.pack.length, 0x42)).catch(() => undefined);
    await close(chanA, hp).catch(() => undefined);
    expect(fs.readFileSync(path.join(repo, `objects/pack/pack-${f.name}.pack`)).equals(f.pack)).toBe(true);
    expect(mainOf()).toBe(f.commit);
    mainBefore = f.commit;
  });

  it('2. state is per host: a channel cannot remove what another channel made history', async () => {
    remember();
    const f = await futureSnapshot('future 2\n');
    // Channel A makes the objects: straight under their names if the master lets it (the file is
    // then "its own"), else the protocol's way.
    const direct = await put(chanA, `${R}/objects/pack/pack-${f.name}.pack`, f.pack).then(() => true, () => false);
    if (direct) await put(chanA, `${R}/objects/pack/pack-${f.name}.idx`, f.idx);
    else {
      await put(chanA, `${R}/objects/pack/tmp_pack_2`, f.pack);
      await put(chanA, `${R}/objects/pack/tmp_idx_2`, f.idx);
      await rename(chanA, `${R}/objects/pack/tmp_pack_2`, `${R}/objects/pack/pack-${f.name}.pack`);
      await rename(chanA, `${R}/objects/pack/tmp_idx_2`, `${R}/objects/pack/pack-${f.name}.idx`);
    }
    // Channel B moves main onto them; then A tries to take them away again.
    await put(chanB, `${R}/refs/heads/.main.tmp-2`, Buffer.from(`${f.commit}\n`));
    await rename(chanB, `${R}/refs/heads/.main.tmp-2`, `${R}/refs/heads/main`);
    await expect(remove(chanA, `${R}/objects/pack/pack-${f.name}.idx`)).rejects.toMatchObject(denied);
    await expect(remove(chanA, `${R}/objects/pack/pack-${f.name}.pack`)).rejects.toMatchObject(denied);
    expect(fs.existsSync(path.join(repo, `objects/pack/pack-${f.name}.pack`))).toBe(true);
    expect(mainOf()).toBe(f.commit);
    mainBefore = f.commit;
  });

  it('3. a lying pack (an old commit listed three times, a fake copy first) is refused, and cannot rewind main', async () => {
    remember();
    const genuineFirst = git('cat-file', 'commit', first);
    const tree = /^tree ([0-9a-f]{40})/.exec(genuineFirst)![1];
    const fake = commitBytes(tree, [mainBefore], 1_900_000_000, 'fake\n');
    const lying = craftPack([
      { type: 'commit', content: fake, claim: first },
      { type: 'commit', content: fake, claim: first },
      { type: 'commit', content: fake, claim: first },
    ]);
    await put(chanA, `${R}/objects/pack/tmp_pack_3`, lying.pack);
    await put(chanA, `${R}/objects/pack/tmp_idx_3`, lying.idx);
    // Named to sort first: refused, a pack is named for its checksum.
    await expect(rename(chanA, `${R}/objects/pack/tmp_pack_3`, `${R}/objects/pack/pack-${'0'.repeat(40)}.pack`)).rejects.toMatchObject(denied);
    await rename(chanA, `${R}/objects/pack/tmp_pack_3`, `${R}/objects/pack/pack-${lying.checksum}.pack`);
    await expect(rename(chanA, `${R}/objects/pack/tmp_idx_3`, `${R}/objects/pack/pack-${lying.checksum}.idx`)).rejects.toMatchObject(denied);
    await put(chanB, `${R}/refs/heads/.main.tmp-3`, Buffer.from(`${first}\n`));
    await expect(rename(chanB, `${R}/refs/heads/.main.tmp-3`, `${R}/refs/heads/main`)).rejects.toMatchObject(denied);
    await remove(chanA, `${R}/objects/pack/tmp_idx_3`);
    await remove(chanB, `${R}/refs/heads/.main.tmp-3`);
    expect(mainOf()).toBe(mainBefore);
    expect(fs.existsSync(path.join(repo, `objects/pack/pack-${lying.checksum}.idx`))).toBe(false);
    // The same files put in place behind the master's back (as over OpenSSH): verify names the pack, reads fall back.
    const sneak = path.join(repo, `objects/pack/pack-${'0'.repeat(40)}`);
    fs.writeFileSync(`${sneak}.pack`, lying.pack);
    fs.writeFileSync(`${sneak}.idx`, lying.idx);
    try {
      const v = await runMaster(['verify', HOST, '--hosts-path', m.hostsPath]);
      expect(v.code).toBe(1);
      expect(v.stdout).toMatch(new RegExp(`pack-${'0'.repeat(40)}.*(listed twice|hashes to)`));
      const log = await runMaster(['log', HOST, '--hosts-path', m.hostsPath]);
      expect(log.code, log.stderr).toBe(0);
      expect(log.stdout).toContain(first.slice(0, 12));
      expect(log.stdout).not.toContain('fake');
    } finally {
      fs.rmSync(`${sneak}.pack`);
      fs.rmSync(`${sneak}.idx`);
    }
  });

  it('3c. a large pack is checked as it uploads, and what is placed is what the master received and checked; any other change to the file drops that and the rename checks the file', async () => {
    remember();
    const P = `${R}/objects/pack`;
    const large = (tag: string) => craftPack(Array.from({ length: 2500 }, (_, i) => ({ type: 'blob' as const, content: Buffer.from(`${tag} ${i}\n`) })));
    const streamedLine = (sha: string) => new RegExp(`pack-${sha}\\.pack: placed from the upload as received, 2500 entries checked on the way in`);
    // (a) Every write sent at once, in reverse order: held until the gap before them is filled.
    const a = large('a');
    const h = await open(chanA, `${P}/tmp_pack_3c`, WRITE);
    const pieces = Array.from({ length: Math.ceil(a.pack.length / 8192) }, (_, i) => i * 8192).reverse();
    await Promise.all(pieces.map((pos) => write(chanA, h, a.pack.subarray(pos, pos + 8192), pos)));
    await close(chanA, h);
    await put(chanA, `${P}/tmp_idx_3c`, a.idx);
    await rename(chanA, `${P}/tmp_pack_3c`, `${P}/pack-${a.checksum}.pack`);
    await m.waitForLog(streamedLine(a.checksum));
    await rename(chanA, `${P}/tmp_idx_3c`, `${P}/pack-${a.checksum}.idx`);
    expect(fs.readFileSync(path.join(repo, `objects/pack/pack-${a.checksum}.pack`)).equals(a.pack)).toBe(true);
    expect(git('cat-file', '-p', a.ids[2499])).toBe('a 2499');
    // (b) The pack sent whole, then bytes in its middle written again (one object's content
    // changed): the stream is dropped, the rename reads the host's file, whose checksum is wrong.
    const b = large('b');
    const hb = await open(chanA, `${P}/tmp_pack_3c`, WRITE);
    for (let pos = 0; pos < b.pack.length; pos += 32 * 1024) await write(chanA, hb, b.pack.subarray(pos, pos + 32 * 1024), pos);
    const mid = b.pack.length >> 1;
    await write(chanA, hb, Buffer.from('XXXX'), mid);
    await close(chanA, hb);
    await expect(rename(chanA, `${P}/tmp_pack_3c`, `${P}/pack-${b.checksum}.pack`)).rejects.toMatchObject(denied);
    // Written back as it was, and a second handle opened on it: no stream, the file is copied and checked, and placed.
    const h2 = await open(chanB, `${P}/tmp_pack_3c`, OPEN_MODE.WRITE);
    await write(chanB, h2, b.pack.subarray(mid, mid + 4), mid);
    await close(chanB, h2);
    await rename(chanA, `${P}/tmp_pack_3c`, `${P}/pack-${b.checksum}.pack`);
    await put(chanA, `${P}/tmp_idx_3c`, b.idx);
    await rename(chanA, `${P}/tmp_idx_3c`, `${P}/pack-${b.checksum}.idx`);
    expect(m.output()).not.toMatch(streamedLine(b.checksum));
    expect(fs.readFileSync(path.join(repo, `objects/pack/pack-${b.checksum}.pack`)).equals(b.pack)).toBe(true);
    // (c) A pack streamed with a lying entry, then its index: refused by what was scanned on the way in.
    const blobs = Array.from({ length: 2500 }, (_, i) => ({ type: 'blob' as const, content: Buffer.from(`c ${i}\n`) }));
    const c = craftPack(blobs.map((x, i) => (i === 2000 ? { ...x, claim: hashObject('blob', Buffer.from('lie\n')) } : x)));
    await put(chanA, `${P}/tmp_pack_3c`, c.pack);
    await put(chanA, `${P}/tmp_idx_3c`, c.idx);
    await rename(chanA, `${P}/tmp_pack_3c`, `${P}/pack-${c.checksum}.pack`);
    await m.waitForLog(streamedLine(c.checksum));
    const refused = await rename(chanA, `${P}/tmp_idx_3c`, `${P}/pack-${c.checksum}.idx`).then(() => null, (e: unknown) => e);
    expect(refused).toMatchObject(denied);
    expect(String(refused)).toContain(`object ${c.ids[2000]}: content hashes to ${hashObject('blob', blobs[2000].content)}`);
    await remove(chanA, `${P}/tmp_idx_3c`);
  });

  it('4. a merge whose first parent is an orphan is not forward', async () => {
    remember();
    const blob = Buffer.from('orphan\n');
    const t = serializeTree([{ name: 'x', mode: '100644', oid: hashObject('blob', blob) }]);
    const orphan = commitBytes(hashObject('tree', t), [], 1_900_000_000, 'orphan\n');
    const merge = commitBytes(hashObject('tree', t), [hashObject('commit', orphan), mainBefore], 1_900_000_100, 'merge\n');
    const p = craftPack([{ type: 'blob', content: blob }, { type: 'tree', content: t }, { type: 'commit', content: orphan }, { type: 'commit', content: merge }]);
    await put(chanA, `${R}/objects/pack/tmp_pack_4`, p.pack);
    await put(chanA, `${R}/objects/pack/tmp_idx_4`, p.idx);
    await rename(chanA, `${R}/objects/pack/tmp_pack_4`, `${R}/objects/pack/pack-${p.checksum}.pack`);
    await rename(chanA, `${R}/objects/pack/tmp_idx_4`, `${R}/objects/pack/pack-${p.checksum}.idx`);
    await put(chanB, `${R}/refs/heads/.main.tmp-4`, Buffer.from(`${hashObject('commit', merge)}\n`));
    await expect(rename(chanB, `${R}/refs/heads/.main.tmp-4`, `${R}/refs/heads/main`)).rejects.toMatchObject(denied);
    await remove(chanB, `${R}/refs/heads/.main.tmp-4`);
    expect(mainOf()).toBe(mainBefore);
  });

  it('5. only the allowlist is writable: no config, commondir, alternates or stray files', async () => {
    remember();
    const configBefore = fs.readFileSync(path.join(repo, 'config'));
    for (const p of ['commondir', 'packed-refs', 'config', 'HEAD', 'objects/info/alternates', 'x/config', 'notes', 'refs/heads/evil', 'objects/ab/cdef', 'hooks/post-update']) {
      await expect(put(chanA, `${R}/${p}`, Buffer.from('[core]\n\tpager = touch /tmp/pwned\n')), p).rejects.toMatchObject(denied);
    }
    for (const d of ['x', 'objects/info', 'hooks', 'refs/heads/sub']) {
      await expect(call<void>((cb) => chanA.mkdir(`${R}/${d}`, (e) => cb(e, undefined))), d).rejects.toMatchObject(denied);
    }
    // Nor by a rename onto them, with a protocol temp name.
    await put(chanA, `${R}/.config.tmp-5`, Buffer.from('[core]\n\tpager = touch /tmp/pwned\n'));
    await expect(rename(chanA, `${R}/.config.tmp-5`, `${R}/config`)).rejects.toMatchObject(denied);
    await expect(rename(chanA, `${R}/.config.tmp-5`, `${R}/commondir`)).rejects.toMatchObject(denied);
    await remove(chanA, `${R}/.config.tmp-5`);
    expect(fs.readFileSync(path.join(repo, 'config')).equals(configBefore)).toBe(true);
    for (const p of ['commondir', 'objects/info/alternates', 'x', 'notes', 'refs/heads/evil']) expect(fs.existsSync(path.join(repo, p)), p).toBe(false);
  });

  it('6. a shadow pack (garbage with a copied index, named to sort first) never becomes visible', async () => {
    remember();
    const idxName = fs.readdirSync(path.join(repo, 'objects/pack')).find((n) => n.endsWith('.idx'))!;
    const copiedIdx = fs.readFileSync(path.join(repo, 'objects/pack', idxName));
    const garbage = Buffer.alloc(fs.statSync(path.join(repo, 'objects/pack', idxName.replace('.idx', '.pack'))).size, 0x55);
    await put(chanA, `${R}/objects/pack/tmp_pack_6`, garbage);
    await put(chanA, `${R}/objects/pack/tmp_idx_6`, copiedIdx);
    await expect(rename(chanA, `${R}/objects/pack/tmp_pack_6`, `${R}/objects/pack/pack-${'0'.repeat(40)}.pack`)).rejects.toMatchObject(denied);
    // A pack with a valid trailer and a copied index of another pack: the index is refused.
    const valid = craftPack([{ type: 'blob', content: Buffer.from('shadow\n') }]);
    await put(chanA, `${R}/objects/pack/tmp_pack_6`, valid.pack);
    await rename(chanA, `${R}/objects/pack/tmp_pack_6`, `${R}/objects/pack/pack-${valid.checksum}.pack`);
    await expect(rename(chanA, `${R}/objects/pack/tmp_idx_6`, `${R}/objects/pack/pack-${valid.checksum}.idx`)).rejects.toMatchObject(denied);
    await remove(chanA, `${R}/objects/pack/tmp_idx_6`);
    expect(fs.readdirSync(path.join(repo, 'objects/pack')).filter((n) => n.startsWith(`pack-${'0'.repeat(40)}`) || n === `pack-${valid.checksum}.idx`)).toEqual([]);
    const log = await runMaster(['log', HOST, '--hosts-path', m.hostsPath]);
    expect(log.code, log.stderr).toBe(0);
    expect(log.stdout).toContain(first.slice(0, 12));
  });

  it('7. limits hold: pipelined OPENs on two channels, write-OPENs of objects, idle unauthenticated connections', async () => {
    remember();
    const fds = () => fs.readdirSync(`/proc/${m.pid()}/fd`).length;
    const before = fds();
    const pack = fs.readdirSync(path.join(repo, 'objects/pack')).find((n) => n.endsWith('.pack'))!;
    // 300 OPENs sent at once over two channels, none awaited before the next is sent.
    const opens = await Promise.allSettled(Array.from({ length: 300 }, (_, i) => open(i % 2 ? chanA : chanB, `${R}/objects/pack/${pack}`, OPEN_MODE.READ)));
    const handles = opens.flatMap((o, i) => (o.status === 'fulfilled' ? [[i % 2 ? chanA : chanB, o.value] as const] : []));
    expect(handles.length).toBeLessThanOrEqual(64);
    expect(fds() - before).toBeLessThanOrEqual(64 + 8);
    for (const [s, h] of handles) await close(s, h);
    // Write-OPENs of an existing object: refused, and nothing copied anywhere.
    const tmpBefore = fs.readdirSync(path.join(base, 'master-tmp')).length;
    const writes = await Promise.allSettled(Array.from({ length: 64 }, () => open(chanA, `${R}/objects/pack/${pack}`, OPEN_MODE.WRITE)));
    expect(writes.every((w) => w.status === 'rejected')).toBe(true);
    expect(fs.readdirSync(path.join(base, 'master-tmp')).length).toBe(tmpBefore);
    // 256 idle TCP connections (from the attacker's address) that never say a word: all but 64
    // are dropped at once, and the genuine host still gets in while they are open.
    const idle: net.Socket[] = [];
    await Promise.all(Array.from({ length: 256 }, () => new Promise<void>((resolve) => {
      const s = net.connect({ port: m.port, host: '127.0.0.1', localAddress: '127.0.0.2' }, () => resolve());
      s.on('error', () => resolve());
      idle.push(s);
    })));
    await m.waitForLog(/refused connection from 127\.0\.0\.2: 64 unauthenticated connections from this address/);
    const r = await snapshotAndPush('while idle connections are open\n');
    expect(mainOf()).toBe(r);
    for (const s of idle) s.destroy();
  });

  it('8. every file is fsynced before it is renamed into place, and its folder after', async () => {
    remember();
    // strace the master while a push lands: each rename onto the pack, the index and the ref
    // comes after an fsync of the file renamed, and is followed by an fsync of the folder.
    const log = path.join(base, 'strace.log');
    const tracer = spawn('strace', ['-f', '-qq', '-e', 'trace=fsync,rename,renameat,renameat2,openat', '-o', log, '-p', String(m.pid())], { stdio: 'ignore' });
    // Its end is awaited from its start: an 'exit' listener added after it ended would wait forever.
    const traced = new Promise((r) => tracer.once('exit', r));
    // strace attaches on its own time: wait until it sees the master open a file we ask for.
    for (let i = 0; !(fs.existsSync(log) && fs.readFileSync(log, 'utf8').includes('/repo/HEAD')); i++) {
      expect(i).toBeLessThan(2000);
      await close(chanA, await open(chanA, `${R}/HEAD`, OPEN_MODE.READ));
    }
    try {
      await snapshotAndPush('traced\n');
    } finally {
      tracer.kill('SIGINT');
      await traced;
    }
    const lines = fs.readFileSync(log, 'utf8').split('\n');
    const renames = lines.filter((l) => /rename.*\.pacha-master-[0-9a-f]+".*"(?:[^"]*\/)?(pack-[0-9a-f]{40}\.(?:pack|idx)|main)"/.test(l));
    expect(renames.length).toBe(3);
    for (const line of renames) {
      const copy = /"([^"]*\.pacha-master-[0-9a-f]+)"/.exec(line)![1];
      const i = lines.indexOf(line);
      const opened = lines.findIndex((l) => l.includes(`"${copy}"`) && /openat/.test(l));
      const fd = /= (\d+)$/.exec(lines[opened])![1];
      expect(lines.slice(opened, i).some((l) => new RegExp(`fsync\\(${fd}\\)`).test(l)), line).toBe(true);
      expect(lines.slice(i + 1, i + 40).some((l) => /fsync\(\d+\)/.test(l)), `directory fsync after ${line}`).toBe(true);
    }
  }, 60_000);

  it('3b. a large pack (its entries checked by several threads) is refused for one bad object deep inside, and accepted whole', async () => {
    remember();
    // More objects than the master checks in one thread (pack-check.ts): the entries go out in ranges.
    const blobs = Array.from({ length: 3000 }, (_, i) => ({ type: 'blob' as const, content: Buffer.from(`large pack blob ${i}\n`) }));
    const bad = craftPack(blobs.map((b, i) => (i === 2900 ? { ...b, claim: hashObject('blob', Buffer.from('something else\n')) } : b)));
    // A second open of the upload drops its stream (test 3c): the entries are checked with the index.
    const unstreamed = async (data: Buffer) => {
      await put(chanA, `${R}/objects/pack/tmp_pack_3b`, data);
      await close(chanA, await open(chanA, `${R}/objects/pack/tmp_pack_3b`, OPEN_MODE.WRITE));
    };
    await unstreamed(bad.pack);
    await put(chanA, `${R}/objects/pack/tmp_idx_3b`, bad.idx);
    await rename(chanA, `${R}/objects/pack/tmp_pack_3b`, `${R}/objects/pack/pack-${bad.checksum}.pack`);
    const refused = await rename(chanA, `${R}/objects/pack/tmp_idx_3b`, `${R}/objects/pack/pack-${bad.checksum}.idx`).then(() => null, (e: unknown) => e);
    expect(refused).toMatchObject(denied);
    expect(String(refused)).toMatch(new RegExp(`object ${bad.ids[2900]}: content hashes to ${hashObject('blob', blobs[2900].content)}`));
    await remove(chanA, `${R}/objects/pack/tmp_idx_3b`);
    expect(fs.existsSync(path.join(repo, `objects/pack/pack-${bad.checksum}.idx`))).toBe(false);
    // The same objects honestly packed: every range verifies, the index is placed.
    const good = craftPack(blobs);
    await unstreamed(good.pack);
    await put(chanA, `${R}/objects/pack/tmp_idx_3b`, good.idx);
    await rename(chanA, `${R}/objects/pack/tmp_pack_3b`, `${R}/objects/pack/pack-${good.checksum}.pack`);
    await rename(chanA, `${R}/objects/pack/tmp_idx_3b`, `${R}/objects/pack/pack-${good.checksum}.idx`);
    expect(git('cat-file', '-p', good.ids[2999])).toBe('large pack blob 2999');
    expect(m.output()).not.toMatch(new RegExp(`pack-(${bad.checksum}|${good.checksum})\\.pack: placed from the upload`));
  });

  it('10. temporary uploads cannot fill the master\'s disk: a byte limit per host, over all its files, handles and channels', async () => {
    remember();
    const P = `${R}/objects/pack`;
    const tempOnDisk = () =>
      ['objects/pack', 'refs/heads', ''].flatMap((d) => fs.readdirSync(path.join(repo, d)).filter((n) => /^(tmp_|\.main\.tmp-|\.HEAD\.tmp-|\.config\.tmp-)/.test(n)).map((n) => fs.statSync(path.join(repo, d, n)).size)).reduce((a, b) => a + b, 0);
    const chunk = Buffer.alloc(256 * 1024, 0x61);
    // Two files on two channels, 24 writes of 256 KiB sent at once without waiting (6 MiB for a 4 MiB limit).
    const ha = await open(chanA, `${P}/tmp_pack_10a`, WRITE);
    const hb = await open(chanB, `${P}/tmp_pack_10b`, WRITE);
    const writes = await Promise.allSettled(Array.from({ length: 24 }, (_, i) => write(i % 2 ? chanA : chanB, i % 2 ? ha : hb, chunk, Math.floor(i / 2) * chunk.length)));
    const refused = writes.flatMap((w) => (w.status === 'rejected' ? [w.reason as Error] : []));
    expect(refused.length).toBeGreaterThanOrEqual(8);
    expect(refused[0]).toMatchObject(failure);
    expect(refused[0].message).toMatch(/temporary uploads of victim would take \d+ bytes on the master, more than the 4194304 allowed per host \(--max-host-temp\)/);
    // (ssh2 sends each 256 KiB write as several requests: the last accepted may end between two.)
    expect(tempOnDisk()).toBeLessThanOrEqual(TEMP_LIMIT);
    expect(tempOnDisk()).toBeGreaterThan(TEMP_LIMIT - chunk.length);
    // A hole is counted: a write far past the end, or a truncate up to a huge size, is refused.
    await expect(write(chanA, ha, Buffer.from('x'), 1024 ** 4)).rejects.toMatchObject(failure);
    await expect(call<void>((cb) => chanA.fsetstat(ha, { size: 1024 ** 4 }, (e) => cb(e, undefined)))).rejects.toMatchObject(failure);
    await expect(setstat(chanB, `${P}/tmp_pack_10b`, { size: 1024 ** 4 })).rejects.toMatchObject(failure);
    // Removing a file while a handle still writes to it frees nothing until the handle is closed.
    const sizeA = fs.statSync(path.join(repo, 'objects/pack/tmp_pack_10a')).size;
    await remove(chanA, `${P}/tmp_pack_10a`);
    await expect(write(chanA, ha, chunk, sizeA)).rejects.toMatchObject(failure);
    await close(chanA, ha);
    // Now its bytes are free again: the other file may grow by them, and no more.
    let sizeB = fs.statSync(path.join(repo, 'objects/pack/tmp_pack_10b')).size;
    const small = chunk.subarray(0, 64 * 1024);
    for (;;) {
      const ok = await write(chanB, hb, small, sizeB).then(() => true, () => false);
      if (!ok) break;
      sizeB += small.length;
    }
    expect(sizeB).toBeGreaterThan(TEMP_LIMIT - small.length);
    expect(tempOnDisk()).toBeLessThanOrEqual(TEMP_LIMIT);
    await close(chanB, hb);
    // A new connection counts the same bytes; removing the upload frees them for the genuine push (afterEach).
    const c2 = await login(HOST);
    const s2 = await call<SFTPWrapper>((cb) => c2.sftp(cb));
    await expect(put(s2, `${R}/refs/heads/.main.tmp-10`, small)).rejects.toMatchObject(failure);
    await remove(s2, `${R}/refs/heads/.main.tmp-10`);
    await remove(s2, `${P}/tmp_pack_10b`);
    c2.end();
    expect(tempOnDisk()).toBe(0);
  });

  it('11. copies a master crash left mid copy-on-rename are removed when the host next connects; temporary files found are counted', async () => {
    remember();
    // A host this master has not served since it started: as after a crash and a restart.
    const other = 'crashed';
    m.keyFor(other);
    const dir = path.join(m.hostDir(other), 'repo');
    for (const d of ['objects/pack', 'refs/heads']) fs.mkdirSync(path.join(dir, d), { recursive: true });
    const copies = ['objects/pack/.pacha-master-0123456789abcdef', 'refs/heads/.pacha-master-fedcba9876543210', '.pacha-master-00112233aabbccdd'];
    for (const c of copies) fs.writeFileSync(path.join(dir, c), 'half a copy');
    // An upload left by the host before the crash: 3 MiB of the 4 MiB it may have.
    fs.writeFileSync(path.join(dir, 'objects/pack/tmp_pack_left'), Buffer.alloc(3 * 1024 * 1024));
    const c = await login(other);
    try {
      const s = await call<SFTPWrapper>((cb) => c.sftp(cb));
      for (const f of copies) expect(fs.existsSync(path.join(dir, f)), f).toBe(false);
      await m.waitForLog(/host=crashed: removed 3 copy\(ies\) an interrupted rename left/);
      await expect(put(s, `/pacha/hosts/${other}/repo/objects/pack/tmp_pack_more`, Buffer.alloc(2 * 1024 * 1024))).rejects.toMatchObject(failure);
      await remove(s, `/pacha/hosts/${other}/repo/objects/pack/tmp_pack_left`);
      await put(s, `/pacha/hosts/${other}/repo/objects/pack/tmp_pack_more`, Buffer.alloc(2 * 1024 * 1024));
      await remove(s, `/pacha/hosts/${other}/repo/objects/pack/tmp_pack_more`);
    } finally {
      c.end();
    }
  });

  it('9. folder modes cannot be changed; folders are made with the master\'s mode', async () => {
    remember();
    for (const d of ['objects', 'objects/pack', 'refs/heads', 'refs', '']) {
      const before = fs.statSync(path.join(repo, d)).mode;
      await expect(setstat(chanA, `${R}/${d}`.replace(/\/$/, ''), { mode: 0o777 }), d).rejects.toMatchObject(denied);
      expect(fs.statSync(path.join(repo, d)).mode).toBe(before);
    }
    fs.rmSync(path.join(repo, 'refs/tags'), { recursive: true, force: true });
    await call<void>((cb) => chanA.mkdir(`${R}/refs/tags`, { mode: 0o777 }, (e) => cb(e, undefined)));
    expect(fs.statSync(path.join(repo, 'refs/tags')).mode & 0o777).toBe(0o755);
  });
});
