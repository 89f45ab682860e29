import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { loadAccountEntries, loadAccounts, parseGroup, parseIdNames, parsePasswd } from '../src/accounts.ts';
import { collectAccounts, decodeAccounts, diffAccounts, encodeAccounts, ownerIdsOfMetadataLines } from '../src/host/accounts-file.ts';
import { encodeMetadataV1, type MetadataEntry } from '../src/format/entry.ts';

// The one reader of the root dir's /etc/passwd and /etc/group.

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});

describe('accounts', () => {
  it('maps names and ids both ways; the first name of an id wins; junk lines are skipped', () => {
    const t = parseIdNames('# users\n\nroot:x:0:0::/root:/bin/sh\ntoor:x:0:0::/root:/bin/sh\nwww:x:33:33::/var/www:/bin/false\n  \nbroken line\nneg:x:-1:0::/:/bin/false\n:x:5:5::/:/bin/false\nroot:x:7:7::/:/bin/false\n');
    expect([...t.byId]).toEqual([[0, 'root'], [33, 'www'], [7, 'root']]);
    expect([...t.byName]).toEqual([['root', 0], ['toor', 0], ['www', 33]]);
  });

  it('reads the files under the root dir, a missing file being empty', () => {
    const root = fs.mkdtempSync(path.join(os.tmpdir(), 'pacha-accounts-'));
    dirs.push(root);
    fs.mkdirSync(path.join(root, 'etc'));
    fs.writeFileSync(path.join(root, 'etc/group'), 'root:x:0:\nadm:x:4:syslog\n');
    const a = loadAccounts(root);
    expect(a.users.byName.size).toBe(0);
    expect(a.groups.byName.get('adm')).toBe(4);
    expect(a.groups.byId.get(0)).toBe('root');
  });
});

describe('passwd and group entries', () => {
  it("this machine's /etc/passwd and /etc/group: every entry getent knows, without the password field", () => {
    const { users, groups } = loadAccountEntries('/');
    const getent = (db: string) => execFileSync('getent', [db], { encoding: 'utf8' }).split('\n').filter((l) => l !== '');
    // getent also lists NSS sources besides the files: every file entry must be among them.
    const pw = new Set(getent('passwd').map((l) => l.split(':').filter((_, i) => i !== 1).join(':')));
    for (const u of users) expect(pw.has([u.name, u.uid, u.gid, u.gecos, u.home, u.shell].join(':'))).toBe(true);
    const gr = new Set(getent('group').map((l) => l.split(':').filter((_, i) => i !== 1).join(':')));
    for (const g of groups) expect(gr.has([g.name, g.gid, g.members.join(',')].join(':'))).toBe(true);
    expect(users.find((u) => u.name === 'root')).toMatchObject({ uid: 0, gid: 0, home: '/root' });
    expect(Object.keys(users[0])).not.toContain('password');
  });

  it('skips junk lines as parseIdNames does', () => {
    expect(parsePasswd('# c\nroot:x:0:0:root:/root:/bin/sh\nshort:x:1:1\nbad:x:a:1:::\nnogid:x:5:z:::\n')).toEqual([{ name: 'root', uid: 0, gid: 0, gecos: 'root', home: '/root', shell: '/bin/sh' }]);
    expect(parseGroup('adm:x:4:syslog,alice\nempty:x:5:\nnomembers:x:6\nbad:x:y:\n')).toEqual([
      { name: 'adm', gid: 4, members: ['syslog', 'alice'] },
      { name: 'empty', gid: 5, members: [] },
      { name: 'nomembers', gid: 6, members: [] },
    ]);
  });
});

describe('.pacha/accounts', () => {
  const passwd = [
    'root:x:0:0:root:/root:/bin/bash',
    'toor:x:0:0:second name of uid 0:/root:/bin/sh',
    'postgres:x:106:114:PostgreSQL administrator,,,:/var/lib/postgresql:/bin/bash',
    'www-data:x:33:33:www-data:/var/www:/usr/sbin/nologin',
    'odd:x:2000:2000:tab\there \\ back:/home/odd:/bin/sh',
    'nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin',
  ].join('\n');
  const group = ['root:x:0:', 'www-data:x:33:', 'postgres:x:114:', 'ssl-cert:x:110:postgres', 'odd:x:2000:', 'backup:x:34:', 'nogroup:x:65534:'].join('\n');
  const db = { users: parsePasswd(passwd), groups: parseGroup(group) };

  it('records the owners, their primary groups and the configured names; nothing else', () => {
    const { manifest, unknown } = collectAccounts(db, { uids: new Set([0, 106]), gids: new Set([110]) }, ['www-data', 'backup', 'ghost']);
    expect(unknown).toEqual(['ghost']);
    expect(manifest.users.map((u) => u.name)).toEqual(['postgres', 'root', 'www-data']);
    expect(manifest.groups.map((g) => g.name)).toEqual(['backup', 'postgres', 'root', 'ssl-cert', 'www-data']);
    const text = encodeAccounts(manifest);
    expect(text).toBe(
      '# accounts (group: name, gid, members; user: name, uid, gid, gecos, home, shell)\n' +
        'group\tbackup\t34\ngroup\tpostgres\t114\ngroup\troot\t0\ngroup\tssl-cert\t110\tpostgres\ngroup\twww-data\t33\n' +
        'user\tpostgres\t106\t114\tPostgreSQL administrator,,,\t/var/lib/postgresql\t/bin/bash\nuser\troot\t0\t0\troot\t/root\t/bin/bash\nuser\twww-data\t33\t33\twww-data\t/var/www\t/usr/sbin/nologin\n',
    );
    expect(decodeAccounts(text)).toEqual(manifest);
  });

  it('escapes tabs and backslashes in fields, and reads them back', () => {
    const { manifest } = collectAccounts(db, { uids: new Set([2000]), gids: new Set() }, []);
    const text = encodeAccounts(manifest);
    expect(text).toContain('user\todd\t2000\t2000\ttab\\there \\\\ back\t/home/odd\t/bin/sh\n');
    expect(decodeAccounts(text).users[0].gecos).toBe('tab\there \\ back');
  });

  it('bad lines name the line and the accepted shape', () => {
    expect(() => decodeAccounts('# x\nuser\tbob\t1\n')).toThrow(/\.pacha\/accounts line 2: expected "group<TAB>name<TAB>gid/);
    expect(() => decodeAccounts('group\tadm\tfour\n')).toThrow(/line 1: bad gid "four"/);
    // Names become groupadd/useradd arguments in a rebuild: never an option.
    expect(() => decodeAccounts('user\t--prefix=/tmp\t1\t1\t\t/\t/bin/sh\n')).toThrow(/line 1: bad name "--prefix=\/tmp"/);
    expect(() => decodeAccounts('group\tadm\t4\tok,-x\n')).toThrow(/line 1: bad name "-x"/);
  });

  it('diff: added, removed and changed users and groups', () => {
    const before = collectAccounts(db, { uids: new Set([106, 33]), gids: new Set([110]) }, []).manifest;
    const db2 = {
      users: parsePasswd(passwd.replace('postgres:x:106:114:PostgreSQL administrator,,,:/var/lib/postgresql:/bin/bash', 'postgres:x:107:114:PostgreSQL administrator,,,:/var/lib/postgresql:/bin/sh')),
      groups: parseGroup(group.replace('ssl-cert:x:110:postgres', 'ssl-cert:x:110:postgres,www-data')),
    };
    const after = collectAccounts(db2, { uids: new Set([107, 0]), gids: new Set([110]) }, []).manifest;
    expect(diffAccounts(before, after)).toEqual([
      '+group root 0',
      'group ssl-cert: members postgres → postgres,www-data',
      '-group www-data',
      'user postgres: uid 106 → 107, shell /bin/bash → /bin/sh',
      '+user root 0:0 /root /bin/bash',
      '-user www-data',
    ]);
    expect(diffAccounts(after, after)).toEqual([]);
  });

  it('owner ids of metadata lines: fields 4 and 5, names with colons, symlinks and nameless ids', () => {
    const entries: MetadataEntry[] = [
      { path: 'etc/a', type: 'file', mode: 0o644, user: 'root', uid: 0, group: 'root', gid: 0, mtimeNs: 1n, size: 1 },
      { path: 'etc/b\twith tab', type: 'file', mode: 0o600, user: 'postgres', uid: 106, group: 'ssl-cert', gid: 110, mtimeNs: 1n, size: 1 },
      { path: 'etc/c', type: 'symlink', mode: 0o777, user: '', uid: 4242, group: 'a:b', gid: 33, mtimeNs: 1n, size: 1, target: 'x' },
      { path: 'etc', type: 'dir', mode: 0o755, user: 'root', uid: 0, group: 'root', gid: 0, mtimeNs: 1n, size: 0 },
    ];
    const ids = ownerIdsOfMetadataLines(Buffer.from(encodeMetadataV1(entries)));
    expect([...ids.uids].sort((a, b) => a - b)).toEqual([0, 106, 4242]);
    expect([...ids.gids].sort((a, b) => a - b)).toEqual([0, 33, 110]);
    expect(ownerIdsOfMetadataLines(Buffer.from('')).uids.size).toBe(0);
  });
});
