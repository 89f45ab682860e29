import fs from 'node:fs';
import path from 'node:path';
import { PachaError } from '../errors.ts';
import { isOid } from './objects.ts';
import { syncDir } from './pack-writer.ts';

// The local repository: a bare git repository, HEAD -> refs/heads/main. Reading goes through
// isomorphic-git with one shared cache; the branch ref is replaced atomically (temp + rename)
// so that a crash leaves the old or the new snapshot, never a truncated ref.

export const MAIN_REF = 'refs/heads/main';

/** The one cache object handed to every isomorphic-git call (parsed pack indexes live there). */
export const gitCache: object = {};

export { fs as gitFs };

/**
 * Forget what isomorphic-git keeps in the cache (whole packs it has read): a long-running agent
 * that read one snapshot through it must not hold that memory for ever. Later reads start afresh.
 */
export function clearGitCache(): void {
  for (const k of Reflect.ownKeys(gitCache)) delete (gitCache as Record<PropertyKey, unknown>)[k];
}

// isomorphic-git takes ~50 ms to load: a re-snapshot with a valid stat cache never needs it.
type IsoGit = typeof import('isomorphic-git').default;
let isoGit: IsoGit | undefined;
async function loadGit(): Promise<IsoGit> {
  isoGit ??= (await import('isomorphic-git')).default;
  return isoGit;
}

export async function initRepo(dir: string): Promise<void> {
  if (fs.existsSync(path.join(dir, 'HEAD'))) return;
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  await (await loadGit()).init({ fs, gitdir: dir, bare: true, defaultBranch: 'main' });
  fs.mkdirSync(path.join(dir, 'objects', 'pack'), { recursive: true });
}

export function isRepo(dir: string): boolean {
  return fs.existsSync(path.join(dir, 'HEAD')) && fs.existsSync(path.join(dir, 'objects'));
}

/** The commit on refs/heads/main, or null for a repository without snapshots. */
export async function readHead(dir: string): Promise<string | null> {
  if (!isRepo(dir)) return null;
  // The ref as pacha writes it (one loose file); packed or symbolic refs go through isomorphic-git.
  try {
    const text = fs.readFileSync(path.join(dir, MAIN_REF), 'utf8').trim();
    if (isOid(text)) return text;
  } catch {
    // not a loose ref
  }
  try {
    return await (await loadGit()).resolveRef({ fs, gitdir: dir, ref: MAIN_REF });
  } catch (e) {
    if ((e as { code?: string }).code === 'NotFoundError') return null;
    throw new PachaError(`cannot read ${MAIN_REF} in ${dir}: ${(e as Error).message}`);
  }
}

/** Point refs/heads/main at commit: temp file + rename, so the ref is never half written. */
export function updateHead(dir: string, commit: string): void {
  if (!isOid(commit)) throw new PachaError(`updateHead: "${commit}" is not a full commit id (40 hex digits)`);
  const ref = path.join(dir, MAIN_REF);
  fs.mkdirSync(path.dirname(ref), { recursive: true });
  const tmp = `${ref}.tmp-${process.pid}`;
  const fd = fs.openSync(tmp, 'w', 0o644);
  try {
    fs.writeSync(fd, commit + '\n');
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  fs.renameSync(tmp, ref);
  syncDir(path.dirname(ref));
}
