import fs from 'node:fs';
import path from 'node:path';
import type { PachaConfig } from '../config.ts';
import type { Logger } from '../log.ts';
import type { Node } from '../snapshot/stat-cache.ts';
import type { NodeMap } from '../snapshot/node-map.ts';
import type { Repository } from '../git/repository.ts';
import { hashObject } from '../git/objects.ts';
import { accountsForSnapshot, decodeAccounts, diffAccounts } from './accounts-file.ts';
import { readHostFiles } from './history.ts';
import { decodePackages, diffPackages } from './packages-file.ts';
import { packageManifestForSnapshot } from './packages.ts';

// What the snapshot engine adds to each snapshot's .pacha/: `packages` (packages-file.ts) and
// `accounts` (accounts-file.ts). The accounts are those of the owners of the recorded paths:
// their uids and gids are counted per id (owners.json in the state dir, tied to the tree it
// describes), and each snapshot updates the counts from the paths it touched, so that a
// snapshot of one changed file in 100,000 does not read 100,000 records again.

export const PACKAGES_NAME = 'packages';
export const ACCOUNTS_NAME = 'accounts';

/** The uid and gid of a record's fields (format/entry.ts encodeFields: type, mode, user:uid, group:gid, ...). */
export function idsOfFields(line: string): [number, number] {
  const a = line.indexOf('\t');
  const b = line.indexOf('\t', a + 1);
  const c = line.indexOf('\t', b + 1);
  const d = line.indexOf('\t', c + 1);
  return [Number(line.slice(line.lastIndexOf(':', c) + 1, c)), Number(line.slice(line.lastIndexOf(':', d) + 1, d))];
}

interface Tally {
  /** The snapshot tree whose paths these are (null: none yet). */
  tree: string | null;
  uids: Map<number, number>;
  gids: Map<number, number>;
}

const memo = new Map<string, Tally>();

function readTally(file: string): Tally | null {
  const m = memo.get(file);
  if (m) return m;
  try {
    const j = JSON.parse(fs.readFileSync(file, 'utf8')) as { tree: string; uids: [number, number][]; gids: [number, number][] };
    return { tree: j.tree, uids: new Map(j.uids), gids: new Map(j.gids) };
  } catch {
    return null;
  }
}

function bump(m: Map<number, number>, id: number, by: number): void {
  const n = (m.get(id) ?? 0) + by;
  if (n > 0) m.set(id, n);
  else m.delete(id);
}

export interface SnapshotHostFiles {
  /** The files for the engine's extraFiles: name -> content (null: remove it). */
  files: Map<string, Buffer | null>;
  /**
   * For the commit message: what changed in them against the previous snapshot ("" when
   * nothing). Asked only when a commit is made, with the repository as the caller opened it.
   */
  note(objects: Repository): string;
  /** Call with the new snapshot's tree once it is built: the owner counts are kept for the next one. */
  done(tree: string): void;
}

/**
 * The host files of the snapshot being taken. `prev` is what the previous snapshot (tree
 * `prevTree`) held; `touched` the paths that differ (compareNodes).
 */
export function snapshotHostFiles(
  env: { config: PachaConfig; stateDir: string; log: Logger },
  s: { prevTree: string | null; prevNodes: ReadonlyMap<string, Node>; nodes: NodeMap; touched: string[]; head: string | null },
): SnapshotHostFiles {
  const file = path.join(env.stateDir, 'owners.json');
  let tally = readTally(file);
  let counted = false;
  if (tally === null || tally.tree === null || tally.tree !== s.prevTree) {
    tally = { tree: null, uids: new Map(), gids: new Map() };
    for (const [, n] of s.nodes) {
      const [u, g] = idsOfFields(n.line);
      bump(tally.uids, u, 1);
      bump(tally.gids, g, 1);
    }
    counted = true;
  } else {
    // A working copy: the kept one still describes prevTree if this snapshot never lands.
    tally = { tree: null, uids: new Map(tally.uids), gids: new Map(tally.gids) };
    for (const p of s.touched) {
      const was = s.prevNodes.get(p);
      const now = s.nodes.get(p);
      if (was === now) continue;
      if (was) {
        const [u, g] = idsOfFields(was.line);
        bump(tally.uids, u, -1);
        bump(tally.gids, g, -1);
      }
      if (now) {
        const [u, g] = idsOfFields(now.line);
        bump(tally.uids, u, 1);
        bump(tally.gids, g, 1);
      }
    }
  }
  const accounts = accountsForSnapshot(env.config.root, { uids: new Set(tally.uids.keys()), gids: new Set(tally.gids.keys()) }, env.config.accounts);
  warnUnknownOnce(env.log, env.config.root, accounts.unknown);
  const packages = packageManifestForSnapshot(env.config.root, env.stateDir, env.log);
  const files = new Map<string, Buffer | null>([
    [ACCOUNTS_NAME, Buffer.from(accounts.text)],
    [PACKAGES_NAME, packages.text === null ? null : Buffer.from(packages.text)],
  ]);
  const final = tally;
  return {
    files,
    note: (objects) => changeNote(objects, s.head, accounts.text, packages.text),
    done(tree) {
      final.tree = tree;
      memo.set(file, final);
      if (!counted && tree === s.prevTree) return;
      // A cache: no fsync; a lost or stale file only means counting every path once more.
      const tmp = `${file}.tmp-${process.pid}`;
      try {
        fs.writeFileSync(tmp, JSON.stringify({ tree, uids: [...final.uids], gids: [...final.gids] }), { mode: 0o600 });
        fs.renameSync(tmp, file);
      } catch (e) {
        env.log.debug(`cannot write ${file}: ${(e as Error).message}`);
      }
    },
  };
}

const told = new Set<string>();

/** pacha.accounts names the host does not have: said once per process, not at every snapshot. */
function warnUnknownOnce(log: Logger, root: string, unknown: string[]): void {
  for (const n of unknown) {
    const k = `${root}\0${n}`;
    if (told.has(k)) continue;
    told.add(k);
    log.warn(`pacha.accounts: "${n}" is neither a user nor a group in ${path.join(root, 'etc/passwd')} or ${path.join(root, 'etc/group')}: not recorded`);
  }
}

/** "packages: 1 installed, 1 upgraded; accounts: 1 added" against the snapshot `head`. */
function changeNote(objects: Repository, head: string | null, accountsText: string, packagesText: string | null): string {
  if (head === null) return '';
  try {
    const oid = (t: string | null) => (t === null ? null : hashObject('blob', Buffer.from(t)));
    const now = { packages: oid(packagesText), accounts: oid(accountsText) };
    const before = readHostFiles(objects, head, { unlessOid: now });
    const parts: string[] = [];
    if (before.packages && packagesText !== null) {
      const n = { installed: 0, removed: 0, 'upgraded or downgraded': 0, 'marked or held': 0 };
      for (const l of diffPackages(before.packages, decodePackages(packagesText))) {
        if (l.startsWith('+')) n.installed++;
        else if (l.startsWith('-')) n.removed++;
        else if (/^\S+ \S+ → /.test(l)) n['upgraded or downgraded']++;
        else n['marked or held']++;
      }
      const d = Object.entries(n).filter(([, v]) => v > 0).map(([k, v]) => `${v} ${k}`);
      if (d.length) parts.push(`packages: ${d.join(', ')}`);
    }
    if (before.accounts) {
      const lines = diffAccounts(before.accounts, decodeAccounts(accountsText));
      const added = lines.filter((l) => l.startsWith('+')).length;
      const removed = lines.filter((l) => l.startsWith('-')).length;
      const d = [added ? `${added} added` : '', removed ? `${removed} removed` : '', lines.length - added - removed ? `${lines.length - added - removed} changed` : ''].filter((x) => x);
      if (d.length) parts.push(`accounts: ${d.join(', ')}`);
    }
    return parts.join('; ');
  } catch {
    return ''; // a note only: a previous snapshot that cannot be read does not stop this one
  }
}
