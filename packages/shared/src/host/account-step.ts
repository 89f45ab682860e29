import fs from 'node:fs';
import { loadAccountEntries, parseIdNames, type GroupEntry, type UserEntry } from '../accounts.ts';
import { PachaError } from '../errors.ts';
import type { Logger } from '../log.ts';
import { hostPath } from '../paths.ts';
import type { AccountsManifest } from './accounts-file.ts';
import { describeFailure, runLogged } from './run-command.ts';

// The rebuild's accounts step (after the pre hooks, before the packages and the files): the
// groups and users .pacha/accounts records that the host lacks (by name) are created with the
// host's own groupadd, useradd and usermod, with their recorded ids where those are free. An id
// taken by another name gets a new one (a system id when the recorded one was), and a warning
// names the files whose owner is then mapped. Under a root dir other than / the tools get
// --prefix ROOT (shadow-utils 4.6+): they write ROOT/etc/passwd, group (and shadow, gshadow when
// there) without chroot, so they need nothing inside the root but those files.
// Users are created without a home directory (-M): homes are files, restored when watched.
// An existing account is never changed; a created group gets its recorded members, a created
// user its recorded supplementary groups.

export interface GroupAction {
  entry: GroupEntry;
  /** The name holding the recorded gid on this host, when it is taken. */
  takenBy?: string;
}

export interface UserAction {
  entry: UserEntry;
  takenBy?: string;
  /** The recorded primary group's name (null: the snapshot names no group with that gid). */
  primaryGroup: string | null;
}

export interface AccountsPlan {
  groups: GroupAction[];
  users: UserAction[];
}

/** System ids are below 1000 on Debian and Fedora (login.defs SYS_UID_MAX 999). */
const SYSTEM_ID_LIMIT = 1000;

export function planAccounts(recorded: AccountsManifest, db: { users: UserEntry[]; groups: GroupEntry[] }): AccountsPlan {
  const groupNames = new Set(db.groups.map((g) => g.name));
  const userNames = new Set(db.users.map((u) => u.name));
  const gidOwner = new Map<number, string>();
  for (const g of db.groups) if (!gidOwner.has(g.gid)) gidOwner.set(g.gid, g.name);
  const uidOwner = new Map<number, string>();
  for (const u of db.users) if (!uidOwner.has(u.uid)) uidOwner.set(u.uid, u.name);
  const groups: GroupAction[] = [];
  for (const g of recorded.groups) {
    if (groupNames.has(g.name)) continue;
    const takenBy = gidOwner.get(g.gid);
    groups.push(takenBy === undefined ? { entry: g } : { entry: g, takenBy });
    // Two recorded groups with one gid: the first gets it.
    if (takenBy === undefined) gidOwner.set(g.gid, g.name);
  }
  const users: UserAction[] = [];
  for (const u of recorded.users) {
    if (userNames.has(u.name)) continue;
    const takenBy = uidOwner.get(u.uid);
    const primaryGroup = recorded.groups.find((g) => g.gid === u.gid)?.name ?? null;
    users.push(takenBy === undefined ? { entry: u, primaryGroup } : { entry: u, takenBy, primaryGroup });
    if (takenBy === undefined) uidOwner.set(u.uid, u.name);
  }
  return { groups, users };
}

export function accountsPlanEmpty(p: AccountsPlan): boolean {
  return p.groups.length === 0 && p.users.length === 0;
}

/** One line per account to create, for the plan and --dry-run. */
export function describeAccountsPlan(p: AccountsPlan): string[] {
  return [
    ...p.groups.map((g) => `create group ${g.entry.name} (gid ${g.entry.gid}${g.takenBy ? ` is taken by ${g.takenBy}: a new gid` : ''})`),
    ...p.users.map(
      (u) =>
        `create user ${u.entry.name} (uid ${u.entry.uid}${u.takenBy ? ` is taken by ${u.takenBy}: a new uid` : ''}, group ${u.primaryGroup ?? u.entry.gid}, home ${u.entry.home}, shell ${u.entry.shell})`,
    ),
  ];
}

export interface AccountsStepResult {
  created: string[];
  warnings: string[];
  /** Output of the tools, for the journal. */
  output: string;
}

function listFiles(files: string[]): string {
  return files.slice(0, 5).join(', ') + (files.length > 5 ? ` and ${files.length - 5} more` : '');
}

/**
 * Create what `plan` lists (made against the host as it is after the pre hooks). `ownedBy` gives
 * the snapshot's files of a user or group, for the warning when its id changes.
 */
export async function runAccountsStep(
  plan: AccountsPlan,
  recorded: AccountsManifest,
  opts: { root: string; log: Logger; ownedBy: (kind: 'user' | 'group', name: string) => string[] },
): Promise<AccountsStepResult> {
  const { root, log } = opts;
  const prefix = root === '/' ? [] : ['--prefix', root];
  const out: AccountsStepResult = { created: [], warnings: [], output: '' };
  const run = async (cmd: string, args: string[]) => {
    const r = await runLogged(cmd, [...prefix, ...args], { label: '[accounts]', log });
    out.output = (out.output + `$ ${cmd} ${[...prefix, ...args].join(' ')}\n` + r.tail).slice(-4096);
    if (r.code !== 0) {
      throw new PachaError(`accounts: ${cmd} ${args.join(' ')} failed: ${describeFailure(r)}${r.tail.trim() ? `\n${r.tail.trimEnd()}` : ''}`, {
        hint: 'fix the cause (or create the account in a pacha_pre hook), then run the same rebuild again; --no-accounts skips this step',
      });
    }
  };
  const mapped = (kind: 'user' | 'group', name: string, recordedId: number, takenBy: string, file: string, idOf: (text: string) => number | undefined) => {
    const now = idOf(fs.readFileSync(hostPath(file, root), 'utf8'));
    const files = opts.ownedBy(kind, name);
    const msg = `${kind} ${name}: the recorded ${kind === 'user' ? 'uid' : 'gid'} ${recordedId} belongs to ${takenBy} on this host: created with ${now ?? 'a new id'}` +
      (files.length ? `; ${listFiles(files)} ${files.length === 1 ? 'gets' : 'get'} ${kind} ${name} (${now ?? 'its new id'}), not ${recordedId}` : '');
    log.warn(msg);
    out.warnings.push(msg);
  };
  const createdGroups = new Set<string>();
  for (const g of plan.groups) {
    const system = g.entry.gid < SYSTEM_ID_LIMIT ? ['-r'] : [];
    await run('groupadd', [...(g.takenBy ? system : ['-g', String(g.entry.gid)]), g.entry.name]);
    createdGroups.add(g.entry.name);
    out.created.push(`group ${g.entry.name}`);
    if (g.takenBy) mapped('group', g.entry.name, g.entry.gid, g.takenBy, '/etc/group', (t) => parseIdNames(t).byName.get(g.entry.name));
  }
  const groupsNow = new Set(loadAccountEntries(root).groups.map((g) => g.name));
  const createdUsers = new Set<string>();
  for (const u of plan.users) {
    const e = u.entry;
    const system = e.uid < SYSTEM_ID_LIMIT ? ['-r'] : [];
    let group: string[];
    if (u.primaryGroup !== null && groupsNow.has(u.primaryGroup)) group = ['-g', u.primaryGroup];
    else {
      const w = `user ${e.name}: its primary group (gid ${e.gid}) is not on this host: created with the default group`;
      log.warn(w);
      out.warnings.push(w);
      group = ['-N'];
    }
    await run('useradd', [...(u.takenBy ? system : ['-u', String(e.uid)]), ...group, '-M', '-d', e.home, '-s', e.shell, '-c', e.gecos, e.name]);
    createdUsers.add(e.name);
    out.created.push(`user ${e.name}`);
    if (u.takenBy) mapped('user', e.name, e.uid, u.takenBy, '/etc/passwd', (t) => parseIdNames(t).byName.get(e.name));
  }
  // Memberships of what was created: recorded members of a created group, recorded groups of a created user.
  const db = loadAccountEntries(root);
  const users = new Set(db.users.map((u) => u.name));
  const add = new Map<string, string[]>();
  for (const g of recorded.groups) {
    const live = db.groups.find((x) => x.name === g.name);
    if (!live) continue;
    for (const m of g.members) {
      if (!users.has(m) || live.members.includes(m) || !(createdGroups.has(g.name) || createdUsers.has(m))) continue;
      let l = add.get(m);
      if (!l) add.set(m, (l = []));
      l.push(g.name);
    }
  }
  for (const [user, groups] of add) await run('usermod', ['-a', '-G', groups.join(','), user]);
  if (out.created.length) log.info(`accounts: created ${out.created.join(', ')}`);
  return out;
}
