import fs from 'node:fs';
import { hostPath } from './paths.ts';

// The user and group databases of the host pacha works on: /etc/passwd and /etc/group under the
// root dir (never those of the machine running pacha, which in tests or a rescue system differ).

export interface IdNames {
  /** name -> id (the first line of a name wins). */
  byName: Map<string, number>;
  /** id -> name (the first name of an id wins, as getpwuid() and getgrgid() do). */
  byId: Map<number, string>;
}

export interface Accounts {
  users: IdNames;
  groups: IdNames;
}

/** Parse passwd or group text ("name:x:id:..."); comments, blank and malformed lines are skipped. */
export function parseIdNames(text: string): IdNames {
  const byName = new Map<string, number>();
  const byId = new Map<number, string>();
  for (const line of text.split('\n')) {
    if (line.startsWith('#') || line.trim() === '') continue;
    const f = line.split(':');
    if (f.length < 3 || f[0] === '' || !/^\d+$/.test(f[2])) continue;
    const id = Number(f[2]);
    if (!Number.isSafeInteger(id)) continue;
    if (!byName.has(f[0])) byName.set(f[0], id);
    if (!byId.has(id)) byId.set(id, f[0]);
  }
  return { byName, byId };
}

/** One database file; a missing file is an empty database. */
export function readIdNames(file: string): IdNames {
  let text = '';
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
  return parseIdNames(text);
}

/** Users and groups of the host under root. */
export function loadAccounts(root: string): Accounts {
  return { users: readIdNames(hostPath('/etc/passwd', root)), groups: readIdNames(hostPath('/etc/group', root)) };
}
