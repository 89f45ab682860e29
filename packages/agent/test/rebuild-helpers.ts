import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { commitSnapshot, initBareRepo, masterHostDir, packRepo, writeHook, type FixtureFile } from '@pacha/test-support/git-fixture';
import { makeTestHost, type TestHost } from '@pacha/test-support/host';

// Shared by the rebuild tests: a snapshot history with everything the original Pacha got
// wrong, a master folder holding it, a fresh host to rebuild it on, and full listings.

export const SVC_UID = 4321;
export const SVC_GID = 4322;

/** A top-level name no real machine has, so "nothing outside the root" can be checked. */
export function uniqueTop(): string {
  return `/pacha-t-${crypto.randomBytes(4).toString('hex')}`;
}

export function richTree(top: string): { roots: string[]; old: FixtureFile[]; current: FixtureFile[] } {
  const svc = { user: 'svcuser', uid: SVC_UID, group: 'svcgroup', gid: SVC_GID };
  const roots = [`${top}/a/conf`, `${top}/b/conf`, `${top}/app`];
  const common: FixtureFile[] = [
    { path: `${top}/a/conf`, type: 'dir', mode: 0o755 },
    { path: `${top}/a/conf/app.conf`, type: 'file', content: 'from a\n', mode: 0o644 },
    { path: `${top}/a/conf/secret.key`, type: 'file', content: 'k3y\n', mode: 0o600 },
    { path: `${top}/b/conf`, type: 'dir', mode: 0o750, group: 'svcgroup', gid: SVC_GID },
    { path: `${top}/b/conf/app.conf`, type: 'file', content: 'from b\n', mode: 0o640 },
    { path: `${top}/app`, type: 'dir', mode: 0o755 },
    { path: `${top}/app/bin`, type: 'dir', mode: 0o755 },
    { path: `${top}/app/bin/tool`, type: 'file', content: '#!/bin/sh\necho tool\n', mode: 0o4755 },
    { path: `${top}/app/shared`, type: 'dir', mode: 0o1777 },
    { path: `${top}/app/empty`, type: 'dir', mode: 0o700, mtimeNs: 1_600_000_000_000_000_000n },
    { path: `${top}/app/data`, type: 'dir', mode: 0o2750, ...svc },
    { path: `${top}/app/data/state.db`, type: 'file', content: Buffer.from([0, 1, 2, 255, 10, 13]), mode: 0o640, ...svc },
    { path: `${top}/app/link`, type: 'symlink', target: 'bin/tool' },
    { path: `${top}/app/dangling`, type: 'symlink', target: '../nowhere/missing' },
    { path: `${top}/app/name with spaces é ü.txt`, type: 'file', content: 'utf-8 ✓\n', mode: 0o644 },
  ];
  const old: FixtureFile[] = [...common, { path: `${top}/app/old.txt`, type: 'file', content: 'deleted later\n' }];
  const current: FixtureFile[] = common.map((e) => (e.path === `${top}/a/conf/app.conf` ? { ...e, content: 'from a, v2\n' } : e));
  return { roots, old, current };
}

export interface RebuildWorld {
  host: TestHost;
  hostsPath: string;
  master: ReturnType<typeof masterHostDir>;
  top: string;
  commits: { old: string; current: string };
  tree: ReturnType<typeof richTree>;
  cleanup(): void;
}

const BASE_PASSWD = 'root:x:0:0:root:/root:/bin/sh\ndaemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n';
const BASE_GROUP = 'root:x:0:\ndaemon:x:1:\n';

/** A master folder holding host "web1" with two snapshots, and a fresh host to rebuild it on. */
export function makeWorld(opts: { packed?: boolean } = {}): RebuildWorld {
  const base = fs.mkdtempSync(path.join(os.tmpdir(), 'pacha-rb-'));
  const hostsPath = path.join(base, 'master-hosts');
  const master = masterHostDir(hostsPath, 'web1');
  initBareRepo(master.repo);
  const top = uniqueTop();
  const tree = richTree(top);
  const old = commitSnapshot(master.repo, { roots: tree.roots, entries: tree.old, time: 1_700_000_000, message: 'first' });
  const current = commitSnapshot(master.repo, { roots: tree.roots, entries: tree.current, time: 1_700_100_000, message: 'second' });
  if (opts.packed !== false) packRepo(master.repo);
  const host = makeTestHost({ name: 'web1', tmpDir: base, config: { 'pacha.host': 'file://', 'pacha.hosts.path': hostsPath } });
  fs.writeFileSync(host.p('/etc/passwd'), BASE_PASSWD);
  fs.writeFileSync(host.p('/etc/group'), BASE_GROUP);
  return {
    host,
    hostsPath,
    master,
    top,
    commits: { old, current },
    tree,
    cleanup: () => fs.rmSync(base, { recursive: true, force: true }),
  };
}

/** The pre hook of the tests: creates the service user and group inside the root dir. */
export function addUserHook(dir: string, name = '10-users'): void {
  writeHook(
    dir,
    name,
    `#!/bin/sh\nset -e\necho "svcuser:x:${SVC_UID}:${SVC_GID}::/nonexistent:/usr/sbin/nologin" >> "$PACHA_ROOT_DIR/etc/passwd"\necho "svcgroup:x:${SVC_GID}:" >> "$PACHA_ROOT_DIR/etc/group"\necho created svcuser\n`,
  );
}

export interface ListedEntry {
  type: string;
  mode: number;
  uid: number;
  gid: number;
  sha?: string;
  target?: string;
  mtimeNs?: bigint;
}

/** Every path under dir (relative), with type, mode, owner, content hash and link target. */
export function listTree(dir: string, opts: { skip?: (rel: string) => boolean; mtimes?: boolean } = {}): Map<string, ListedEntry> {
  const out = new Map<string, ListedEntry>();
  const walk = (rel: string) => {
    const abs = path.join(dir, rel);
    const st = fs.lstatSync(abs, { bigint: true });
    const e: ListedEntry = { type: st.isFile() ? 'file' : st.isDirectory() ? 'dir' : st.isSymbolicLink() ? 'symlink' : 'other', mode: Number(st.mode & 0o7777n), uid: Number(st.uid), gid: Number(st.gid) };
    if (opts.mtimes) e.mtimeNs = st.mtimeNs;
    if (e.type === 'file') e.sha = crypto.createHash('sha256').update(fs.readFileSync(abs)).digest('hex');
    if (e.type === 'symlink') e.target = fs.readlinkSync(abs);
    if (rel !== '') out.set(rel, e);
    if (e.type === 'dir') for (const n of fs.readdirSync(abs)) {
      const r = rel === '' ? n : `${rel}/${n}`;
      if (!opts.skip?.(r)) walk(r);
    }
  };
  walk('');
  return out;
}

/** What the restored tree must be: the fixture's entries with owners resolved as given. */
export function expectedListing(entries: FixtureFile[], ids: { users: Record<string, number>; groups: Record<string, number> }): Map<string, ListedEntry> {
  const out = new Map<string, ListedEntry>();
  for (const e of entries) {
    const rel = e.path.replace(/^\//, '');
    const l: ListedEntry = {
      type: e.type,
      mode: e.type === 'symlink' ? 0o777 : e.mode ?? (e.type === 'dir' ? 0o755 : 0o644),
      uid: ids.users[e.user ?? 'root'] ?? e.uid ?? 0,
      gid: ids.groups[e.group ?? 'root'] ?? e.gid ?? 0,
    };
    if (e.type === 'file') l.sha = crypto.createHash('sha256').update(e.content ?? '').digest('hex');
    if (e.type === 'symlink') l.target = e.target;
    out.set(rel, l);
  }
  return out;
}
