import { HOST_TREE } from '@pacha/shared/master-tree';
import { TMP_CONFIG_PREFIX, TMP_HEAD_PREFIX, TMP_IDX_PREFIX, TMP_PACK_PREFIX, TMP_REF_PREFIX } from '@pacha/shared/push/remote-repo';
import { Refusal } from './host-view.ts';

// What a host may change in its folder on the embedded master: an allowlist, so that a
// compromised host cannot erase its own past (DESIGN.md, "Master host tree"). Paths are relative
// to the host's folder, symlinks resolved (host-view.ts). A host may only
//   - create, write, truncate and remove the temporary files of the push protocol, in the places
//     the protocol puts them (objects/pack/tmp_pack_*, tmp_idx_*, refs/heads/.main.tmp-*,
//     .HEAD.tmp-*, .config.tmp-*), and take and release its lock (repo/pacha-push.lock);
//   - create the repository's folders (with the master's modes, not its own);
//   - rename a temporary file onto what it stands for: a pack, its index, the ref, HEAD or
//     config. The master then copies it into a file of its own and checks that copy (place.ts):
//     no handle of the host ever refers to a file that is an object or the ref.
// Everything else (hooks, other files, chmod of folders, removing or renaming history) is refused
// with a message naming what is allowed.

export type PathKind =
  | { kind: 'tmp'; /** what it may be renamed onto */ for: 'pack' | 'idx' | 'ref' | 'head' | 'config' }
  | { kind: 'lock' }
  | { kind: 'pack' | 'idx'; /** the 40 hex digits of its name */ sha: string }
  | { kind: 'ref' | 'head' | 'config' }
  | { kind: 'dir' }
  | { kind: 'other' };

const R = HOST_TREE.repo;
/** The repository's folders a host may create; their modes are the master's. */
const REPO_DIRS = new Set([R, `${R}/objects`, `${R}/objects/pack`, `${R}/refs`, `${R}/refs/heads`, `${R}/refs/tags`]);
const SUFFIX = '[A-Za-z0-9._-]{1,128}';
const esc = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
const TMP: [RegExp, 'pack' | 'idx' | 'ref' | 'head' | 'config'][] = [
  [new RegExp(`^${R}/objects/pack/${esc(TMP_PACK_PREFIX)}${SUFFIX}$`), 'pack'],
  [new RegExp(`^${R}/objects/pack/${esc(TMP_IDX_PREFIX)}${SUFFIX}$`), 'idx'],
  [new RegExp(`^${R}/refs/heads/${esc(TMP_REF_PREFIX)}${SUFFIX}$`), 'ref'],
  [new RegExp(`^${R}/${esc(TMP_HEAD_PREFIX)}${SUFFIX}$`), 'head'],
  [new RegExp(`^${R}/${esc(TMP_CONFIG_PREFIX)}${SUFFIX}$`), 'config'],
];
const PACK_RE = new RegExp(`^${R}/objects/pack/pack-([0-9a-f]{40})\\.(pack|idx)$`);

export const MAIN_REF = `${R}/refs/heads/main`;

/** The master's own copies are named so, beside their target, until renamed into place (place.ts; host-state.ts removes those a crash left). */
export const MASTER_COPY_PREFIX = '.pacha-master-';

/** What a temporary file may become: a pack, its index, the ref, HEAD or config. */
export type Placeable = Extract<PathKind, { kind: 'pack' | 'idx' | 'ref' | 'head' | 'config' }>;

function isPlaceable(k: PathKind): k is Placeable {
  return k.kind === 'pack' || k.kind === 'idx' || k.kind === 'ref' || k.kind === 'head' || k.kind === 'config';
}

export function classify(rel: string): PathKind {
  for (const [re, what] of TMP) if (re.test(rel)) return { kind: 'tmp', for: what };
  if (rel === HOST_TREE.lock) return { kind: 'lock' };
  const m = PACK_RE.exec(rel);
  if (m) return { kind: m[2] === 'pack' ? 'pack' : 'idx', sha: m[1] };
  if (rel === MAIN_REF) return { kind: 'ref' };
  if (rel === `${R}/HEAD`) return { kind: 'head' };
  if (rel === `${R}/config`) return { kind: 'config' };
  if (REPO_DIRS.has(rel)) return { kind: 'dir' };
  return { kind: 'other' };
}

const WRITABLE = `repo/objects/pack/${TMP_PACK_PREFIX}*, ${TMP_IDX_PREFIX}*, repo/refs/heads/${TMP_REF_PREFIX}*, repo/${TMP_HEAD_PREFIX}*, repo/${TMP_CONFIG_PREFIX}* and repo/pacha-push.lock`;
const HISTORY = 'objects, the ref, HEAD and config change only by renaming a temporary file onto them, which the master checks';

function what(rel: string): string {
  return rel || '.';
}

/** Open for writing, create, truncate, set attributes: only temporary files and the lock. */
export function checkWrite(rel: string): void {
  const k = classify(rel);
  if (k.kind === 'tmp' || k.kind === 'lock') return;
  if (isPlaceable(k)) {
    throw new Refusal('denied', `${what(rel)}: history is append-only: ${HISTORY} (writable: ${WRITABLE})`);
  }
  throw new Refusal('denied', `${what(rel)}: read-only for the host (writable: ${WRITABLE}; hooks are managed on the master)`);
}

export function checkRemove(rel: string): void {
  const k = classify(rel);
  if (k.kind === 'tmp' || k.kind === 'lock') return;
  if (k.kind === 'other') throw new Refusal('denied', `${what(rel)}: cannot be removed by the host (removable: ${WRITABLE})`);
  throw new Refusal('denied', `${what(rel)}: history is append-only and cannot be removed`);
}

export function checkMkdir(rel: string): void {
  if (classify(rel).kind !== 'dir') {
    throw new Refusal('denied', `${what(rel)}: the host may create only the repository's folders (${[...REPO_DIRS].join(', ')})`);
  }
}

/**
 * A rename: the source must be a temporary file, the target what that file stands for. Returns
 * the target's kind for place.ts, which copies, checks and renames.
 */
export function checkRename(fromRel: string, toRel: string): Placeable {
  const from = classify(fromRel);
  const to = classify(toRel);
  if (from.kind !== 'tmp') {
    if (from.kind === 'other' || from.kind === 'dir') throw new Refusal('denied', `${what(fromRel)}: cannot be moved by the host (only temporary files of a push are renamed)`);
    throw new Refusal('denied', `${what(fromRel)}: history is append-only and cannot be moved`);
  }
  if (!isPlaceable(to) || to.kind !== from.for) {
    const targets = { pack: 'repo/objects/pack/pack-<checksum>.pack', idx: 'repo/objects/pack/pack-<checksum>.idx', ref: MAIN_REF, head: 'repo/HEAD', config: 'repo/config' };
    throw new Refusal('denied', `${what(toRel)}: ${what(fromRel)} may be renamed only onto ${targets[from.for]}`);
  }
  return to;
}
