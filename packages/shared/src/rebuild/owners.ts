import type { Accounts } from '../accounts.ts';
import { hostPath } from '../paths.ts';
import type { Logger } from '../log.ts';
import { escapeTerminal } from '../terminal.ts';

// Owners are resolved by *name* on the rebuilt host, from its own /etc/passwd and /etc/group
// (under the root dir, see accounts.ts), read after the pre hooks have had the chance to create
// the users.
// A name the host lacks falls back to the numeric id recorded in the snapshot, with a warning
// that names the user or group and the files: never silently to root.

export interface OwnerResolver {
  uid(user: string, recordedUid: number, hostPathForWarning: string): number;
  gid(group: string, recordedGid: number, hostPathForWarning: string): number;
  /** One warning per missing name, listing (some of) the files it concerned. */
  reportMissing(log: Logger): string[];
}

export function ownerResolver(accounts: Accounts, root: string): OwnerResolver {
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
      const id = accounts.users.byName.get(user);
      if (id !== undefined) return id;
      note(missingUsers, user, recorded, file);
      return recorded;
    },
    gid(group, recorded, file) {
      if (group === '') return recorded;
      const id = accounts.groups.byName.get(group);
      if (id !== undefined) return id;
      note(missingGroups, group, recorded, file);
      return recorded;
    },
    reportMissing(log) {
      const out: string[] = [];
      const say = (kind: 'user' | 'group', db: string, m: Map<string, { id: number; files: string[] }>) => {
        for (const [name, { id, files }] of m) {
          const list = files.slice(0, 5).map((f) => escapeTerminal(f)).join(', ') + (files.length > 5 ? ` and ${files.length - 5} more` : '');
          const msg = `${kind} "${escapeTerminal(name)}" does not exist in ${hostPath(db, root)}: ${list} ${files.length === 1 ? 'gets' : 'get'} the recorded numeric ${kind === 'user' ? 'uid' : 'gid'} ${id} (create the ${kind} in a pacha_pre hook to fix this)`;
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
