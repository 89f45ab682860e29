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
  for (const f of entryFields(text, 3)) {
    const id = Number(f[2]);
    if (!byName.has(f[0])) byName.set(f[0], id);
    if (!byId.has(id)) byId.set(id, f[0]);
  }
  return { byName, byId };
}

/** A database file's text; a missing file is an empty database. */
function readDb(file: string): string {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    return '';
  }
}

/** One database file; a missing file is an empty database. */
export function readIdNames(file: string): IdNames {
  return parseIdNames(readDb(file));
}

// What useradd and groupadd accept on Debian and Fedora (a trailing $ for Samba machine
// accounts). A name never starts with '-': it becomes a groupadd/useradd argument in a rebuild.
const ACCOUNT_NAME = /^[A-Za-z0-9_.][A-Za-z0-9_.-]*\$?$/;

export function isAccountName(name: string): boolean {
  return ACCOUNT_NAME.test(name);
}

/** A passwd line without its password field (pacha never reads or records password hashes). */
export interface UserEntry {
  name: string;
  uid: number;
  gid: number;
  gecos: string;
  home: string;
  shell: string;
}

/** A group line without its password field. */
export interface GroupEntry {
  name: string;
  gid: number;
  members: string[];
}

/** The lines of passwd or group text that parseIdNames accepts, split into fields. */
function entryFields(text: string, min: number): string[][] {
  const out: string[][] = [];
  for (const line of text.split('\n')) {
    if (line.startsWith('#') || line.trim() === '') continue;
    const f = line.split(':');
    if (f.length < min || f[0] === '' || !/^\d+$/.test(f[2]) || !Number.isSafeInteger(Number(f[2]))) continue;
    out.push(f);
  }
  return out;
}

/** Parse /etc/passwd: name:password:uid:gid:gecos:home:shell (the password field is dropped). */
export function parsePasswd(text: string): UserEntry[] {
  return entryFields(text, 7)
    .filter((f) => /^\d+$/.test(f[3]))
    .map((f) => ({ name: f[0], uid: Number(f[2]), gid: Number(f[3]), gecos: f[4], home: f[5], shell: f.slice(6).join(':') }));
}

/** Parse /etc/group: name:password:gid:members (the password field is dropped). */
export function parseGroup(text: string): GroupEntry[] {
  return entryFields(text, 3).map((f) => ({ name: f[0], gid: Number(f[2]), members: (f[3] ?? '').split(',').filter((m) => m !== '') }));
}

/** Every entry of the root dir's /etc/passwd and /etc/group (shadow files are never read). */
export function loadAccountEntries(root: string): { users: UserEntry[]; groups: GroupEntry[] } {
  return { users: parsePasswd(readDb(hostPath('/etc/passwd', root))), groups: parseGroup(readDb(hostPath('/etc/group', root))) };
}

/** Users and groups of the host under root. */
export function loadAccounts(root: string): Accounts {
  return { users: readIdNames(hostPath('/etc/passwd', root)), groups: readIdNames(hostPath('/etc/group', root)) };
}
