import type { PachaConfig } from '../config.ts';
import { PachaError } from '../errors.ts';
import { Repository } from '../git/repository.ts';
import { loadAccountEntries } from '../accounts.ts';
import { PACHA_DIR } from '../format/snapshot.ts';
import { escapeTerminal } from '../terminal.ts';
import { ACCOUNTS_FILE, decodeAccounts, diffAccounts, type AccountsManifest } from './accounts-file.ts';
import { PACKAGES_FILE, decodePackages, diffPackages, type PackageManifest } from './packages-file.ts';
import { readPackageManifest } from './packages.ts';

// The host files of a snapshot (.pacha/packages, .pacha/accounts) as `pacha log -p`,
// `pacha diff` and the rebuild read them: from any repository through the one reader, Repository.

export interface HostFiles {
  packages: PackageManifest | null;
  accounts: AccountsManifest | null;
  /** Blob ids, null when the snapshot has no such file (older snapshots, hosts without a package database). */
  packagesOid: string | null;
  accountsOid: string | null;
}

function blobText(objects: Repository, oid: string, what: string): string {
  const o = objects.read(oid);
  if (o.type !== 'blob') throw new PachaError(`the repository is damaged: ${what} (${oid}) is a ${o.type}, not a file`);
  return o.content.toString('utf8');
}

/** Read (and parse) the two files of a commit. A file that does not parse is an error naming it. */
export function readHostFiles(objects: Repository, commit: string, opts: { unlessOid?: { packages: string | null; accounts: string | null } } = {}): HostFiles {
  const root = objects.readTree(objects.readCommit(commit).tree);
  const pacha = root.find((e) => e.name === PACHA_DIR && e.mode.replace(/^0+/, '') === '40000');
  const files = new Map((pacha ? objects.readTree(pacha.oid) : []).map((e) => [e.name, e.oid]));
  const packagesOid = files.get(PACKAGES_FILE.slice(PACHA_DIR.length + 1)) ?? null;
  const accountsOid = files.get(ACCOUNTS_FILE.slice(PACHA_DIR.length + 1)) ?? null;
  const parse = <T>(oid: string | null, what: string, decode: (t: string) => T): T | null => {
    // The caller has this content already (same blob id): no need to parse it.
    if (oid === null || oid === opts.unlessOid?.packages || oid === opts.unlessOid?.accounts) return null;
    try {
      return decode(blobText(objects, oid, what));
    } catch (e) {
      if (e instanceof PachaError) throw e;
      throw new PachaError(`snapshot ${commit.slice(0, 12)}: ${(e as Error).message}`);
    }
  };
  return {
    packages: parse(packagesOid, PACKAGES_FILE, decodePackages),
    accounts: parse(accountsOid, ACCOUNTS_FILE, decodeAccounts),
    packagesOid,
    accountsOid,
  };
}

export interface HostChanges {
  packages: string[];
  accounts: string[];
}

/** Lines for a manifest that had none before: a count, not every package. */
function firstRecord(before: HostFiles | null, after: HostFiles): HostChanges {
  const out: HostChanges = { packages: [], accounts: [] };
  if (after.packages && !before?.packages) out.packages.push(`${after.packages.packages.length} ${after.packages.manager} packages recorded`);
  if (after.accounts && !before?.accounts) out.accounts.push(`${after.accounts.users.length} users and ${after.accounts.groups.length} groups recorded`);
  return out;
}

function changesBetween(before: HostFiles | null, after: HostFiles): HostChanges {
  const out = firstRecord(before, after);
  if (before?.packages && before.packagesOid !== after.packagesOid) out.packages = diffPackages(before.packages, after.packages);
  if (before?.accounts && before.accountsOid !== after.accountsOid) out.accounts = diffAccounts(before.accounts, after.accounts);
  return out;
}

/** What a commit changed in the packages and accounts, against its first parent. */
export function commitHostChanges(objects: Repository, commit: string): HostChanges {
  const after = readHostFiles(objects, commit);
  const parent = objects.readCommit(commit).parents[0];
  return changesBetween(parent ? readHostFiles(objects, parent) : null, after);
}

/**
 * `pacha diff`: how the live package database and accounts differ from the snapshot `head`.
 * Accounts compared: those the snapshot records, by name, plus the owners `newOwners` (of
 * paths added or changed since) and the configured names.
 */
export function liveHostChanges(objects: Repository | null, head: string | null, config: PachaConfig, newOwners: { uids: number[]; gids: number[] }): HostChanges {
  const recorded = objects && head ? readHostFiles(objects, head) : null;
  const live = readPackageManifest(config.root).manifest;
  const db = loadAccountEntries(config.root);
  const users = new Map<string, (typeof db.users)[number]>();
  const groups = new Map<string, (typeof db.groups)[number]>();
  const wantUser = new Set([...(recorded?.accounts?.users.map((u) => u.name) ?? []), ...config.accounts]);
  const wantGroup = new Set([...(recorded?.accounts?.groups.map((g) => g.name) ?? []), ...config.accounts]);
  const uids = new Set(newOwners.uids);
  const gids = new Set(newOwners.gids);
  for (const u of db.users) if (!users.has(u.name) && (wantUser.has(u.name) || uids.has(u.uid))) users.set(u.name, u);
  for (const u of users.values()) gids.add(u.gid);
  for (const g of db.groups) if (!groups.has(g.name) && (wantGroup.has(g.name) || gids.has(g.gid))) groups.set(g.name, g);
  const liveAccounts: AccountsManifest = { users: [...users.values()], groups: [...groups.values()] };
  const out: HostChanges = { packages: [], accounts: [] };
  if (live && !recorded?.packages) out.packages.push(`${live.packages.length} ${live.manager} packages not recorded yet`);
  else if (recorded?.packages) out.packages = diffPackages(recorded.packages, live);
  if (!recorded?.accounts) {
    if (liveAccounts.users.length + liveAccounts.groups.length > 0) out.accounts.push(`${liveAccounts.users.length} users and ${liveAccounts.groups.length} groups not recorded yet`);
  } else out.accounts = diffAccounts(recorded.accounts, liveAccounts);
  return out;
}

/** commitHostChanges for each of `commits` of the repository in repoDir. */
export function hostChangesOfCommits(repoDir: string, commits: string[]): Map<string, HostChanges> {
  const objects = new Repository(repoDir);
  try {
    return new Map(commits.map((c) => [c, commitHostChanges(objects, c)]));
  } finally {
    objects.close();
  }
}

/** Lines for the terminal (`pacha log -p`, `pacha diff`): "    package  +hello 2.10-3", escaped. */
export function hostChangeLines(c: HostChanges, indent = '    '): string[] {
  return [...c.packages.map((l) => `${indent}package  ${escapeTerminal(l)}`), ...c.accounts.map((l) => `${indent}account  ${escapeTerminal(l)}`)];
}
