import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import ssh2 from 'ssh2';
import type { SFTPWrapper } from 'ssh2';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { silentLogger } from '@pacha/shared/log';
import { SftpTransport } from '@pacha/shared/transport/sftp';
import { REPO_CONFIG, REPO_HEAD } from '@pacha/shared/git/repository';
import { startMaster, type MasterHandle } from '@pacha/test-support/master';

// What a host (possibly compromised) can do on the embedded master: only its own folder, writes
// only on the allowlist (the push protocol's temporary files and lock), hooks read-only, history
// append-only. Each refusal is checked on disk too: the file or ref is unchanged, and native git
// still accepts the repository. (hostile.test.ts attacks each defect class of issue 11.)

const git = (cwd: string, ...args: string[]) =>
  execFileSync('git', args, { cwd, encoding: 'utf8', env: { ...process.env, GIT_AUTHOR_NAME: 't', GIT_AUTHOR_EMAIL: 't@t', GIT_COMMITTER_NAME: 't', GIT_COMMITTER_EMAIL: 't@t' } }).trim();

let m: MasterHandle;
let a: SftpTransport;
let rawConn: ssh2.Client | undefined;
let raw: SFTPWrapper;
let work: string;
const commits: Record<string, string> = {};
const A = '/pacha/hosts/hosta';
let repoA: string;

beforeAll(async () => {
  m = await startMaster({ hosts: ['hosta', 'hostb'] });
  work = fs.mkdtempSync(path.join(os.tmpdir(), 'pacha-confine-'));
  // History on the master, as pushes would leave it: c1 <- c2 <- c4; main at c2; c3 a side branch off c1.
  const w = path.join(work, 'w');
  fs.mkdirSync(w);
  git(w, 'init', '-q', '-b', 'main');
  fs.writeFileSync(path.join(w, 'f'), '1');
  git(w, 'add', 'f');
  git(w, 'commit', '-q', '-m', 'c1');
  commits.c1 = git(w, 'rev-parse', 'HEAD');
  fs.writeFileSync(path.join(w, 'f'), '2');
  git(w, 'commit', '-q', '-am', 'c2');
  commits.c2 = git(w, 'rev-parse', 'HEAD');
  fs.writeFileSync(path.join(w, 'f'), '4');
  git(w, 'commit', '-q', '-am', 'c4');
  commits.c4 = git(w, 'rev-parse', 'HEAD');
  git(w, 'checkout', '-q', '-b', 'side', commits.c1);
  fs.writeFileSync(path.join(w, 'f'), '3');
  git(w, 'commit', '-q', '-am', 'c3');
  commits.c3 = git(w, 'rev-parse', 'HEAD');
  git(w, 'checkout', '-q', 'main');
  for (const h of ['hosta', 'hostb']) {
    const repo = path.join(m.hostDir(h), 'repo');
    git(work, 'clone', '-q', '--bare', '--no-local', w, repo);
    git(repo, 'symbolic-ref', 'HEAD', 'refs/heads/main');
    git(repo, 'update-ref', 'refs/tags/c4', commits.c4); // uploaded, not yet on main
    // main only in packed-refs (as a clone leaves it): the check must find it there.
    git(repo, 'update-ref', 'refs/heads/main', commits.c2);
    git(repo, 'pack-refs', '--all', '--prune');
    git(repo, 'repack', '-adq');
    fs.writeFileSync(path.join(m.hostDir(h), 'pacha_pre', '10-users'), '#!/bin/sh\necho pre\n', { mode: 0o755 });
  }
  repoA = path.join(m.hostDir('hosta'), 'repo');
  // A loose object too (objects/xx/...).
  execFileSync('git', ['hash-object', '-w', '--stdin'], { cwd: repoA, input: 'loose\n' });
  // Operator-made symlinks leading out of the host's folder.
  fs.symlinkSync('/etc', path.join(repoA, 'etc-link'));
  fs.symlinkSync(m.hostDir('hostb'), path.join(repoA, 'b-link'));

  const kh = path.join(work, 'known_hosts');
  fs.writeFileSync(kh, m.knownHostsLine + '\n');
  const key = fs.readFileSync(m.keyFor('hosta'));
  a = await SftpTransport.connect({ host: '127.0.0.1', port: m.port, user: 'hosta', auth: { privateKey: key, source: 'test' }, knownHostsFile: kh, log: silentLogger });
  const conn = (rawConn = new ssh2.Client());
  raw = await new Promise<SFTPWrapper>((resolve, reject) => {
    conn.once('error', reject);
    conn.once('ready', () => conn.sftp((err, s) => (err ? reject(err) : resolve(s))));
    conn.connect({ host: '127.0.0.1', port: m.port, username: 'hosta', privateKey: key });
  });
});

afterAll(async () => {
  await a?.close();
  rawConn?.end();
  await m?.stop();
  fs.rmSync(work, { recursive: true, force: true });
});

const denied = { code: 'EACCES' };
/** A raw SFTP request (for what the Transport interface does not offer). */
const sftpCall = (fn: (s: SFTPWrapper, cb: (err?: Error | null) => void) => void) =>
  new Promise<void>((resolve, reject) => fn(raw, (err) => (err ? reject(err) : resolve())));
const packFiles = () => fs.readdirSync(path.join(repoA, 'objects/pack')).filter((n) => /^pack-.*\.(pack|idx)$/.test(n));
const mainOf = (repo: string) => git(repo, 'rev-parse', 'refs/heads/main');

describe('confinement to the host folder', () => {
  it("cannot list, read or write another host's folder", async () => {
    await expect(a.list('/pacha/hosts/hostb')).rejects.toMatchObject(denied);
    await expect(a.readFile('/pacha/hosts/hostb/repo/HEAD')).rejects.toMatchObject(denied);
    await expect(a.writeFile('/pacha/hosts/hostb/repo/x', 'x')).rejects.toMatchObject(denied);
    await expect(a.stat('/pacha/hosts/hostb')).rejects.toMatchObject(denied);
    expect(fs.existsSync(path.join(m.hostDir('hostb'), 'repo/x'))).toBe(false);
    // The hosts folder shows only the host itself.
    expect((await a.list('/pacha/hosts')).map((e) => e.name)).toEqual(['hosta']);
    expect((await a.list('/')).map((e) => e.name)).toEqual(['pacha']);
  });

  it('cannot leave with ..', async () => {
    for (const p of [`${A}/../hostb/repo/HEAD`, `${A}/repo/../../hostb/repo/HEAD`, 'repo/../../hostb/repo/HEAD', `${A}/../../../etc/passwd`, '/etc/passwd', '../hostb/repo/HEAD']) {
      await expect(a.readFile(p), p).rejects.toMatchObject(denied);
    }
    // .. that stays inside is fine.
    expect((await a.readFile(`${A}/repo/../repo/HEAD`)).toString()).toMatch(/^ref: refs\/heads\/main/);
    expect((await a.readFile('repo/HEAD')).toString()).toMatch(/^ref: refs\/heads\/main/);
  });

  it('cannot leave through symlinks, nor make them', async () => {
    await expect(a.readFile(`${A}/repo/etc-link/passwd`)).rejects.toMatchObject(denied);
    await expect(a.list(`${A}/repo/etc-link`)).rejects.toMatchObject(denied);
    await expect(a.readFile(`${A}/repo/b-link/repo/HEAD`)).rejects.toMatchObject(denied);
    await expect(a.writeFile(`${A}/repo/b-link/repo/evil`, 'x')).rejects.toMatchObject(denied);
    await expect(a.writeFile(`${A}/repo/etc-link`, 'x')).rejects.toBeTruthy();
    expect(fs.readlinkSync(path.join(repoA, 'etc-link'))).toBe('/etc');
    expect(fs.existsSync(path.join(m.hostDir('hostb'), 'repo/evil'))).toBe(false);
    await expect(sftpCall((s, cb) => s.symlink('/etc', `${A}/repo/mine`, cb))).rejects.toThrow(/cannot be created|denied/i);
    expect(fs.existsSync(path.join(repoA, 'mine'))).toBe(false);
  });

  it('reads its hooks but cannot change them', async () => {
    expect((await a.readFile(`${A}/pacha_pre/10-users`)).toString()).toContain('echo pre');
    await expect(a.writeFile(`${A}/pacha_pre/10-users`, 'rm -rf /')).rejects.toMatchObject(denied);
    await expect(a.writeFile(`${A}/pacha_post/99-evil`, 'x')).rejects.toMatchObject(denied);
    await expect(a.remove(`${A}/pacha_pre/10-users`)).rejects.toMatchObject(denied);
    await expect(a.mkdirp(`${A}/pacha_post/sub`)).rejects.toMatchObject(denied);
    await expect(a.writeFile(`${A}/repo/hook.tmp`, 'evil')).rejects.toMatchObject(denied);
    await a.writeFile(`${A}/repo/objects/pack/tmp_pack_hook`, 'evil');
    await expect(a.rename(`${A}/repo/objects/pack/tmp_pack_hook`, `${A}/pacha_pre/05-evil`)).rejects.toMatchObject(denied);
    await a.remove(`${A}/repo/objects/pack/tmp_pack_hook`);
    await expect(sftpCall((s, cb) => s.setstat(`${A}/pacha_pre/10-users`, { mode: 0o777 }, cb))).rejects.toThrow(/read-only|denied/i);
    await expect(a.writeFile(`${A}/notes`, 'x')).rejects.toMatchObject(denied);
    expect(fs.readFileSync(path.join(m.hostDir('hosta'), 'pacha_pre/10-users'), 'utf8')).toContain('echo pre');
    expect(fs.statSync(path.join(m.hostDir('hosta'), 'pacha_pre/10-users')).mode & 0o777).toBe(0o755);
    expect(fs.readdirSync(path.join(m.hostDir('hosta'), 'pacha_pre'))).toEqual(['10-users']);
  });
});

describe('append-only history', () => {
  it('cannot overwrite, truncate, remove or move away existing objects', async () => {
    const before = packFiles();
    const pack = before.find((n) => n.endsWith('.pack'))!;
    const vpack = `${A}/repo/objects/pack/${pack}`;
    const bytes = fs.readFileSync(path.join(repoA, 'objects/pack', pack));
    await expect(a.writeFile(vpack, 'garbage')).rejects.toMatchObject(denied);
    await expect(a.remove(vpack)).rejects.toMatchObject(denied);
    await expect(a.rename(vpack, `${A}/repo/stolen.pack`)).rejects.toMatchObject(denied);
    await expect(sftpCall((s, cb) => s.setstat(vpack, { size: 0 }, cb))).rejects.toThrow(/append-only/);
    await a.writeFile(`${A}/repo/objects/pack/tmp_pack_x`, 'other bytes');
    await expect(a.rename(`${A}/repo/objects/pack/tmp_pack_x`, vpack)).rejects.toMatchObject(denied);
    // The same bytes again (a retried push): accepted, the temp file is gone, the object untouched.
    fs.writeFileSync(path.join(work, 'same.pack'), bytes);
    await a.upload(path.join(work, 'same.pack'), `${A}/repo/objects/pack/tmp_pack_same`);
    await a.rename(`${A}/repo/objects/pack/tmp_pack_same`, vpack);
    expect(await a.stat(`${A}/repo/objects/pack/tmp_pack_same`)).toBeNull();
    // Nothing is written in place, not even the same bytes: history changes only by a checked rename.
    await expect(a.upload(path.join(work, 'same.pack'), vpack)).rejects.toThrow(/append-only|denied/i);
    const head = (await a.readFile(`${A}/repo/HEAD`)).toString();
    await expect(a.writeFile(`${A}/repo/HEAD`, head)).rejects.toMatchObject(denied);
    await expect(a.writeFile(`${A}/repo/HEAD`, 'ref: refs/heads/evil\n')).rejects.toMatchObject(denied);
    expect(fs.readFileSync(path.join(repoA, 'HEAD'), 'utf8')).toBe(head);
    expect(fs.readFileSync(path.join(repoA, 'objects/pack', pack)).equals(bytes)).toBe(true);
    expect(packFiles()).toEqual(before);

    const looseDir = fs.readdirSync(path.join(repoA, 'objects')).find((n) => /^[0-9a-f]{2}$/.test(n))!;
    const loose = fs.readdirSync(path.join(repoA, 'objects', looseDir))[0];
    await expect(a.remove(`${A}/repo/objects/${looseDir}/${loose}`)).rejects.toMatchObject(denied);
    await expect(a.writeFile(`${A}/repo/objects/${looseDir}/${loose}`, 'x')).rejects.toMatchObject(denied);
    // Folders are never renamed: objects/ cannot be moved away.
    await expect(a.rename(`${A}/repo/objects`, `${A}/repo/objects-old`)).rejects.toMatchObject(denied);
    await expect(sftpCall((s, cb) => s.rmdir(`${A}/repo/objects/pack`, cb))).rejects.toBeTruthy();
    expect(fs.existsSync(path.join(repoA, 'objects', looseDir, loose))).toBe(true);
  });

  it('may rewrite and remove its temp files, and rename them only onto what they stand for', async () => {
    await a.writeFile(`${A}/repo/objects/pack/tmp_pack_new`, 'partial');
    await a.writeFile(`${A}/repo/objects/pack/tmp_pack_new`, 'complete');
    await a.writeFile(`${A}/repo/objects/pack/tmp_idx_drop`, 'x');
    await a.remove(`${A}/repo/objects/pack/tmp_idx_drop`);
    // Not a pack (nor named for its checksum), and .keep is not on the list at all.
    await expect(a.rename(`${A}/repo/objects/pack/tmp_pack_new`, `${A}/repo/objects/pack/pack-${'ab'.repeat(20)}.pack`)).rejects.toMatchObject(denied);
    await expect(a.rename(`${A}/repo/objects/pack/tmp_pack_new`, `${A}/repo/objects/pack/pack-${'ab'.repeat(20)}.keep`)).rejects.toMatchObject(denied);
    await expect(a.rename(`${A}/repo/objects/pack/tmp_pack_new`, `${A}/repo/objects/pack/tmp_pack_other`)).rejects.toMatchObject(denied);
    expect(fs.readdirSync(path.join(repoA, 'objects/pack')).filter((n) => /^pack-(abab|.*\.keep)/.test(n) || n.startsWith('.pacha-master'))).toEqual([]);
    await a.remove(`${A}/repo/objects/pack/tmp_pack_new`);
    // The push lock file: created exclusively, removed.
    expect(await a.createExclusive(`${A}/repo/pacha-push.lock`, 'pid')).toBe(true);
    expect(await a.createExclusive(`${A}/repo/pacha-push.lock`, 'pid')).toBe(false);
    await a.remove(`${A}/repo/pacha-push.lock`);
  });

  it('moves the ref forward only, to a commit the master has', async () => {
    const ref = `${A}/repo/refs/heads/main`;
    expect(mainOf(repoA)).toBe(commits.c2);
    await expect(a.writeFile(ref, commits.c4 + '\n')).rejects.toMatchObject(denied);
    await expect(a.remove(ref)).rejects.toMatchObject(denied);
    // Neither the files that say how git reads the repository.
    for (const f of ['HEAD', 'config', 'packed-refs']) {
      const before = fs.readFileSync(path.join(repoA, f));
      await expect(a.writeFile(`${A}/repo/${f}`, 'x'), f).rejects.toMatchObject(denied);
      expect(fs.readFileSync(path.join(repoA, f)).equals(before), f).toBe(true);
      await expect(a.remove(`${A}/repo/${f}`), f).rejects.toMatchObject(denied);
    }
    await expect(a.mkdirp(`${A}/repo/hooks/x`)).rejects.toMatchObject(denied);
    await expect(a.writeFile(`${A}/repo/hooks/post-update`, '#!/bin/sh')).rejects.toMatchObject(denied);
    const tryRef = async (content: string) => {
      await a.writeFile(`${A}/repo/refs/heads/.main.tmp-t`, content);
      return a.rename(`${A}/repo/refs/heads/.main.tmp-t`, ref);
    };
    await expect(tryRef('not a commit\n')).rejects.toMatchObject(denied);
    await expect(tryRef('0123456789abcdef0123456789abcdef01234567\n')).rejects.toMatchObject(denied);
    await expect(tryRef(commits.c3 + '\n')).rejects.toMatchObject(denied); // sideways
    expect(mainOf(repoA)).toBe(commits.c2);
    await tryRef(commits.c4 + '\n'); // forward
    expect(mainOf(repoA)).toBe(commits.c4);
    await expect(a.rename(ref, `${A}/repo/refs/heads/old`)).rejects.toMatchObject(denied);
    await expect(a.remove(ref)).rejects.toMatchObject(denied);
    await expect(tryRef(commits.c1 + '\n')).rejects.toMatchObject(denied); // backward
    await expect(tryRef(commits.c2 + '\n')).rejects.toMatchObject(denied);
    expect(mainOf(repoA)).toBe(commits.c4);
    await tryRef(commits.c4 + '\n'); // same: fine (idempotent push)
    expect(fs.readFileSync(path.join(repoA, 'refs/heads/main'), 'utf8')).toBe(commits.c4 + '\n');
    await m.waitForLog(/push accepted: host=hosta main [0-9a-f]{12}\.\.[0-9a-f]{12}/);
  });

  it("leaves every repository valid for native git", () => {
    for (const h of ['hosta', 'hostb']) {
      execFileSync('git', ['fsck', '--full', '--strict'], { cwd: path.join(m.hostDir(h), 'repo'), stdio: 'pipe' });
    }
    expect(mainOf(path.join(m.hostDir('hostb'), 'repo'))).toBe(commits.c2);
  });
});

describe('a push as the protocol does it, onto an empty host', () => {
  it('first push, then a second push, land; native git accepts the result', async () => {
    const kh = path.join(work, 'known_hosts');
    const t = await SftpTransport.connect({ host: '127.0.0.1', port: m.port, user: 'fresh', auth: { privateKey: fs.readFileSync(m.keyFor('fresh')), source: 'test' }, knownHostsFile: kh, log: silentLogger });
    try {
      const F = '/pacha/hosts/fresh/repo';
      const w = path.join(work, 'w');
      // Objects for a commit as one pack + idx, written by native git.
      const packOf = (revs: string) => {
        const dir = fs.mkdtempSync(path.join(work, 'pack-'));
        const name = execFileSync('git', ['pack-objects', '-q', '--revs', path.join(dir, 'pack')], { cwd: w, input: revs + '\n', encoding: 'utf8' }).trim();
        return { pack: path.join(dir, `pack-${name}.pack`), idx: path.join(dir, `pack-${name}.idx`), name };
      };
      const push = async (revs: string, tip: string) => {
        await t.mkdirp(`${F}/objects/pack`);
        await t.mkdirp(`${F}/refs/heads`);
        if (!(await t.stat(`${F}/config`))) {
          // Only pacha's own config is accepted (a host's could name commands git runs).
          await t.writeFile(`${F}/.config.tmp-1`, '[core]\n\tpager = touch /tmp/pwned\n');
          await expect(t.rename(`${F}/.config.tmp-1`, `${F}/config`)).rejects.toMatchObject(denied);
          await t.writeFile(`${F}/.config.tmp-1`, REPO_CONFIG);
          await t.rename(`${F}/.config.tmp-1`, `${F}/config`);
        }
        if (!(await t.stat(`${F}/HEAD`))) {
          await t.writeFile(`${F}/.HEAD.tmp-1`, REPO_HEAD);
          await t.rename(`${F}/.HEAD.tmp-1`, `${F}/HEAD`);
        }
        // Packs native git wrote (with deltas inside the pack): accepted once verified.
        const p = packOf(revs);
        await t.upload(p.pack, `${F}/objects/pack/tmp_pack_${p.name}`);
        await t.upload(p.idx, `${F}/objects/pack/tmp_idx_${p.name}`);
        // The index only after its pack.
        await expect(t.rename(`${F}/objects/pack/tmp_idx_${p.name}`, `${F}/objects/pack/pack-${p.name}.idx`)).rejects.toMatchObject(denied);
        await t.rename(`${F}/objects/pack/tmp_pack_${p.name}`, `${F}/objects/pack/pack-${p.name}.pack`);
        await t.rename(`${F}/objects/pack/tmp_idx_${p.name}`, `${F}/objects/pack/pack-${p.name}.idx`);
        await t.writeFile(`${F}/refs/heads/.main.tmp-1`, tip + '\n');
        await t.rename(`${F}/refs/heads/.main.tmp-1`, `${F}/refs/heads/main`);
      };
      await push(commits.c1, commits.c1);
      await push(`${commits.c4}\n^${commits.c1}`, commits.c4);
      const repo = path.join(m.hostDir('fresh'), 'repo');
      execFileSync('git', ['fsck', '--full', '--strict'], { cwd: repo, stdio: 'pipe' });
      expect(git(repo, 'rev-parse', 'HEAD')).toBe(commits.c4);
      expect(git(repo, 'rev-list', '--count', 'main')).toBe('3');
      await m.waitForLog(/push accepted: host=fresh main \(new\)\.\.[0-9a-f]{12}/);
      await m.waitForLog(new RegExp(`push accepted: host=fresh main ${commits.c1.slice(0, 12)}\\.\\.${commits.c4.slice(0, 12)}`));
    } finally {
      await t.close();
    }
  });
});
