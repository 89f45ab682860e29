import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { loadAccounts, parseIdNames } from '../src/accounts.ts';

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
