import { isAccountName, loadAccountEntries, type GroupEntry, type UserEntry } from '../accounts.ts';
import { FormatError, comparePaths, escapeField, unescapeField } from '../format/entry.ts';

// `.pacha/accounts`: the passwd and group entries (never a password or its hash: shadow files
// are never read) of every user and group that owns a recorded path, of the primary groups of
// those users, and of the names in pacha.accounts. Groups first, then users, each by name:
//
//   # accounts (group: name, gid, members; user: name, uid, gid, gecos, home, shell)
//   group	postgres	114
//   group	ssl-cert	110	postgres
//   user	postgres	106	114	PostgreSQL administrator,,,	/var/lib/postgresql	/bin/bash
//
// Fields are escaped like paths in .pacha/metadata (backslash, tab, control characters).

export const ACCOUNTS_FILE = '.pacha/accounts';
const HEADER = '# accounts (group: name, gid, members; user: name, uid, gid, gecos, home, shell)';

export interface AccountsManifest {
  /** Sorted by name. */
  groups: GroupEntry[];
  /** Sorted by name. */
  users: UserEntry[];
}

const byName = <T extends { name: string }>(a: T, b: T) => comparePaths(a.name, b.name);

export function encodeAccounts(m: AccountsManifest): string {
  let out = HEADER + '\n';
  for (const g of [...m.groups].sort(byName)) {
    out += `group\t${escapeField(g.name)}\t${g.gid}${g.members.length ? '\t' + g.members.map(escapeField).join(',') : ''}\n`;
  }
  for (const u of [...m.users].sort(byName)) {
    out += ['user', u.name, String(u.uid), String(u.gid), u.gecos, u.home, u.shell].map((f, i) => (i === 2 || i === 3 ? f : escapeField(f))).join('\t') + '\n';
  }
  return out;
}

function accountName(s: string): string {
  const n = unescapeField(s);
  if (!isAccountName(n)) throw new FormatError(`bad name "${s}" (letters, digits, '_', '.', '-', not starting with '-')`);
  return n;
}

function id(s: string, what: string): number {
  const n = Number(s);
  if (!/^\d+$/.test(s) || !Number.isSafeInteger(n)) throw new FormatError(`bad ${what} "${s}" (expected a number)`);
  return n;
}

/** Parse .pacha/accounts; errors name the line and what is accepted. */
export function decodeAccounts(text: string): AccountsManifest {
  const groups: GroupEntry[] = [];
  const users: UserEntry[] = [];
  const lines = text.split('\n');
  if (lines[lines.length - 1] === '') lines.pop();
  lines.forEach((line, i) => {
    if (line.startsWith('#')) return;
    try {
      const f = line.split('\t');
      if (f[0] === 'group' && (f.length === 3 || f.length === 4)) {
        groups.push({ name: accountName(f[1]), gid: id(f[2], 'gid'), members: f.length === 4 ? f[3].split(',').filter((m) => m !== '').map(accountName) : [] });
      } else if (f[0] === 'user' && f.length === 7) {
        users.push({ name: accountName(f[1]), uid: id(f[2], 'uid'), gid: id(f[3], 'gid'), gecos: unescapeField(f[4]), home: unescapeField(f[5]), shell: unescapeField(f[6]) });
      } else {
        throw new FormatError('expected "group<TAB>name<TAB>gid[<TAB>members]" or "user<TAB>name<TAB>uid<TAB>gid<TAB>gecos<TAB>home<TAB>shell"');
      }
    } catch (e) {
      throw new FormatError(`${ACCOUNTS_FILE} line ${i + 1}: ${(e as Error).message}`);
    }
  });
  return { groups: groups.sort(byName), users: users.sort(byName) };
}

export interface OwnerIds {
  uids: Set<number>;
  gids: Set<number>;
}

/**
 * The accounts to record: the users owning a path (the first passwd line of a uid names it, as
 * in .pacha/metadata), the groups owning one, the primary groups of those users, and `names`
 * (pacha.accounts: a user, a group, or both of that name). `unknown`: names neither file has.
 */
export function collectAccounts(db: { users: UserEntry[]; groups: GroupEntry[] }, owners: OwnerIds, names: string[]): { manifest: AccountsManifest; unknown: string[] } {
  const users = new Map<string, UserEntry>();
  const groups = new Map<string, GroupEntry>();
  const seenUid = new Set<number>();
  for (const u of db.users) {
    if (owners.uids.has(u.uid) && !seenUid.has(u.uid)) users.set(u.name, u);
    seenUid.add(u.uid);
  }
  const unknown: string[] = [];
  for (const n of names) {
    const u = db.users.find((x) => x.name === n);
    const g = db.groups.find((x) => x.name === n);
    if (u) users.set(n, u);
    if (g) groups.set(n, g);
    if (!u && !g) unknown.push(n);
  }
  const gids = new Set(owners.gids);
  for (const u of users.values()) gids.add(u.gid);
  const seenGid = new Set<number>();
  for (const g of db.groups) {
    if (gids.has(g.gid) && !seenGid.has(g.gid)) groups.set(g.name, g);
    seenGid.add(g.gid);
  }
  return { manifest: { groups: [...groups.values()].sort(byName), users: [...users.values()].sort(byName) }, unknown };
}

/**
 * The distinct uids and gids of .pacha/metadata lines (fields 4 and 5, "name:id"). Works on
 * bytes: only the two fields are decoded.
 */
export function ownerIdsOfMetadataLines(text: Buffer, into: OwnerIds = { uids: new Set(), gids: new Set() }): OwnerIds {
  let pos = 0;
  const n = text.length;
  while (pos < n) {
    let end = text.indexOf(10, pos);
    if (end < 0) end = n;
    // Skip three fields: path, type, mode.
    let t = pos - 1;
    for (let k = 0; k < 3 && t < end; k++) {
      t = text.indexOf(9, t + 1);
      if (t < 0 || t > end) t = end;
    }
    const uidEnd = t < end ? text.indexOf(9, t + 1) : -1;
    const gidEnd = uidEnd >= 0 && uidEnd < end ? text.indexOf(9, uidEnd + 1) : -1;
    if (gidEnd >= 0 && gidEnd <= end) {
      const uid = trailingNumber(text, t + 1, uidEnd);
      const gid = trailingNumber(text, uidEnd + 1, gidEnd);
      if (uid >= 0) into.uids.add(uid);
      if (gid >= 0) into.gids.add(gid);
    }
    pos = end + 1;
  }
  return into;
}

/** The digits after the last ':' of text[start, end), or -1. */
function trailingNumber(b: Buffer, start: number, end: number): number {
  let v = 0;
  let mul = 1;
  let i = end - 1;
  for (; i >= start; i--) {
    const c = b[i];
    if (c === 58) break; // ':'
    if (c < 48 || c > 57) return -1;
    v += (c - 48) * mul;
    mul *= 10;
  }
  return i >= start && i < end - 1 ? v : -1;
}

function describeUser(u: UserEntry): string {
  return `${u.uid}:${u.gid} ${u.home} ${u.shell}`;
}

/**
 * What changed between two account lists, in name order, groups first:
 *   +user postgres 106:114 /var/lib/postgresql /bin/bash
 *   -group docker
 *   user postgres: uid 106 → 107, shell /bin/sh → /bin/bash
 *   group ssl-cert: members postgres → postgres,www-data
 * A missing list (null) counts as empty. The text is as recorded: escape it for a terminal.
 */
export function diffAccounts(before: AccountsManifest | null, after: AccountsManifest | null): string[] {
  const out: string[] = [];
  const section = <T extends { name: string }>(kind: string, a: T[], b: T[], desc: (x: T) => string, fields: (x: T, y: T) => string[]) => {
    const ma = new Map(a.map((x) => [x.name, x]));
    const mb = new Map(b.map((x) => [x.name, x]));
    for (const name of [...new Set([...ma.keys(), ...mb.keys()])].sort(comparePaths)) {
      const x = ma.get(name);
      const y = mb.get(name);
      if (!x) out.push(`+${kind} ${name} ${desc(y!)}`);
      else if (!y) out.push(`-${kind} ${name}`);
      else {
        const d = fields(x, y);
        if (d.length) out.push(`${kind} ${name}: ${d.join(', ')}`);
      }
    }
  };
  const change = (label: string, a: string | number, b: string | number) => (a === b ? [] : [`${label} ${String(a) || '""'} → ${String(b) || '""'}`]);
  section('group', before?.groups ?? [], after?.groups ?? [], (g) => `${g.gid}${g.members.length ? ' ' + g.members.join(',') : ''}`, (x, y) => [
    ...change('gid', x.gid, y.gid),
    ...change('members', x.members.join(','), y.members.join(',')),
  ]);
  section('user', before?.users ?? [], after?.users ?? [], (u) => describeUser(u), (x, y) => [
    ...change('uid', x.uid, y.uid),
    ...change('gid', x.gid, y.gid),
    ...change('gecos', x.gecos, y.gecos),
    ...change('home', x.home, y.home),
    ...change('shell', x.shell, y.shell),
  ]);
  return out;
}

/**
 * The .pacha/accounts text of a snapshot: the root dir's passwd and group entries for these
 * owners and names. `unknown`: names of pacha.accounts the host has neither as user nor group.
 */
export function accountsForSnapshot(root: string, owners: OwnerIds, names: string[]): { text: string; manifest: AccountsManifest; unknown: string[] } {
  const { manifest, unknown } = collectAccounts(loadAccountEntries(root), owners, names);
  return { text: encodeAccounts(manifest), manifest, unknown };
}
