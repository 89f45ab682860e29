import fs from 'node:fs';
import path from 'node:path';
import git from 'isomorphic-git';
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

export async function initRepo(dir: string): Promise<void> {
  if (fs.existsSync(path.join(dir, 'HEAD'))) return;
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  await git.init({ fs, gitdir: dir, bare: true, defaultBranch: 'main' });
  fs.mkdirSync(path.join(dir, 'objects', 'pack'), { recursive: true });
}

export function isRepo(dir: string): boolean {
  return fs.existsSync(path.join(dir, 'HEAD')) && fs.existsSync(path.join(dir, 'objects'));
}

/** The commit on refs/heads/main, or null for a repository without snapshots. */
export async function readHead(dir: string): Promise<string | null> {
  if (!isRepo(dir)) return null;
  try {
    return await git.resolveRef({ fs, gitdir: dir, ref: MAIN_REF });
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
