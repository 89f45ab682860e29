import fs from 'node:fs';
import { hostPath } from '../paths.ts';
import type { Logger } from '../log.ts';

// Owners are resolved by *name* on the rebuilt host, from its own /etc/passwd and /etc/group
// (under the root dir), read after the pre hooks have had the chance to create the users.
// A name the host lacks falls back to the numeric id recorded in the snapshot, with a warning
// that names the user or group and the files: never silently to root.

export interface IdTable {
  users: Map<string, number>;
  groups: Map<string, number>;
  /** uid -> name, gid -> name, for messages. */
  userNames: Map<number, string>;
  groupNames: Map<number, string>;
}

function parseIdFile(file: string): { byName: Map<string, number>; byId: Map<number, string> } {
  const byName = new Map<string, number>();
  const byId = new Map<number, string>();
  let text = '';
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
  for (const line of text.split('\n')) {
    if (line.startsWith('#') || line.trim() === '') continue;
    const f = line.split(':');
    const id = Number(f[2]);
    if (f.length < 3 || f[0] === '' || !/^\d+$/.test(f[2] ?? '') || !Number.isSafeInteger(id)) continue;
    if (!byName.has(f[0])) byName.set(f[0], id);
    if (!byId.has(id)) byId.set(id, f[0]);
  }
  return { byName, byId };
}

export function loadIdTable(root: string): IdTable {
  const p = parseIdFile(hostPath('/etc/passwd', root));
  const g = parseIdFile(hostPath('/etc/group', root));
  return { users: p.byName, groups: g.byName, userNames: p.byId, groupNames: g.byId };
}

export interface OwnerResolver {
  uid(user: string, recordedUid: number, hostPathForWarning: string): number;
  gid(group: string, recordedGid: number, hostPathForWarning: string): number;
  /** One warning per missing name, listing (some of) the files it concerned. */
  reportMissing(log: Logger): string[];
}

export function ownerResolver(table: IdTable, root: string): OwnerResolver {
  const missingUsers = new Map<string, { id: number; files: string[] }>();
  const missingGroups = new Map<string, { id: number; files: string[] }>();
  const note = (m: Map<string, { id: number; files: string[] }>, name: string, id: number, file: string) => {
    let e = m.get(name);
    if (!e) m.set(name, (e = { id, files: [] }));
    e.files.push(file);
  };
  return {
    uid(user, recorded, file) {
      if (user === '') return recorded; // it had no name when the snapshot was taken
      const id = table.users.get(user);
      if (id !== undefined) return id;
      note(missingUsers, user, recorded, file);
      return recorded;
    },
    gid(group, recorded, file) {
      if (group === '') return recorded;
      const id = table.groups.get(group);
      if (id !== undefined) return id;
      note(missingGroups, group, recorded, file);
      return recorded;
    },
    reportMissing(log) {
      const out: string[] = [];
      const say = (kind: 'user' | 'group', db: string, m: Map<string, { id: number; files: string[] }>) => {
        for (const [name, { id, files }] of m) {
          const list = files.slice(0, 5).join(', ') + (files.length > 5 ? ` and ${files.length - 5} more` : '');
          const msg = `${kind} "${name}" does not exist in ${hostPath(db, root)}: ${list} ${files.length === 1 ? 'gets' : 'get'} the recorded numeric ${kind === 'user' ? 'uid' : 'gid'} ${id} (create the ${kind} in a pacha_pre hook to fix this)`;
          log.warn(msg);
          out.push(msg);
        }
      };
      say('user', '/etc/passwd', missingUsers);
      say('group', '/etc/group', missingGroups);
      return out;
    },
  };
}
