import crypto from 'node:crypto';
import { NotFoundError, RemoteError, errorMessage } from '../errors.ts';
import type { Logger } from '../log.ts';
import { parsePackedRefs } from '../git/packed-refs.ts';
import { MAIN_REF as REF, REPO_CONFIG, REPO_DIRS, REPO_HEAD } from '../git/repository.ts';
import type { MasterHostPaths } from '../master-tree.ts';
import type { Transport } from '../transport/transport.ts';

// The host's bare repository on the master, seen through a Transport: create it on first push,
// read its ref, clear what a dead push left behind, and replace the ref atomically.

/**
 * Prefixes of a pack and its index being uploaded. No .pack/.idx suffix: git opens every
 * *.idx in objects/pack, and a half-written one would make fsck fail. Cleared by the next push.
 */
export const TMP_PACK_PREFIX = 'tmp_pack_';
export const TMP_IDX_PREFIX = 'tmp_idx_';
/** Prefix of the ref's temporary file: git ignores names starting with a dot in refs/. */
export const TMP_REF_PREFIX = '.main.tmp-';
/** Prefixes of the first push's HEAD and config, written under these names and renamed. */
export const TMP_HEAD_PREFIX = '.HEAD.tmp-';
export const TMP_CONFIG_PREFIX = '.config.tmp-';

export function randomTag(): string {
  return `${process.pid}-${crypto.randomBytes(4).toString('hex')}`;
}

/** Write a small file under a temporary name next to it, then rename it over the target. */
export async function replaceFile(t: Transport, file: string, data: string, tmpName: string): Promise<void> {
  const dir = file.slice(0, file.lastIndexOf('/'));
  const tmp = `${dir}/${tmpName}`;
  await t.writeFile(tmp, data);
  await t.rename(tmp, file);
}

/**
 * Directories and config first; HEAD renamed into place last, so a repo with a HEAD is
 * complete. The folders, the config and HEAD's temporary file go together (each request is a
 * round trip). `fresh`: the caller made the repository's folder just now (no HEAD to look for).
 */
export async function ensureRemoteRepo(t: Transport, p: MasterHostPaths, opts: { fresh?: boolean } = {}): Promise<boolean> {
  if (opts.fresh !== true && (await t.stat(`${p.repo}/HEAD`))) return false;
  const headTmp = `${p.repo}/${TMP_HEAD_PREFIX}${randomTag()}`;
  await Promise.all([
    ...REPO_DIRS.map((d) => t.mkdirp(`${p.repo}/${d}`)),
    replaceFile(t, `${p.repo}/config`, REPO_CONFIG, `${TMP_CONFIG_PREFIX}${randomTag()}`),
    t.writeFile(headTmp, REPO_HEAD),
  ]);
  await t.rename(headTmp, `${p.repo}/HEAD`);
  return true;
}

/**
 * The master's commit for this host, read fresh (loose ref, else packed-refs), or null. Both are
 * asked for at once: one round trip, not two when the loose ref is missing.
 */
export async function readRemoteHead(t: Transport, p: MasterHostPaths): Promise<string | null> {
  const parse = (text: string, where: string): string => {
    const v = text.trim();
    if (!/^[0-9a-f]{40}$/.test(v)) throw new RemoteError(`${where} on the master is not a commit id: "${v.slice(0, 60)}"`);
    return v;
  };
  // null: the file is missing; a promise that rejects: it could not be read.
  const read = (file: string) => t.readFile(file).catch((e: unknown) => (e instanceof NotFoundError ? null : Promise.reject(e)));
  const packedRead = read(`${p.repo}/packed-refs`);
  packedRead.catch(() => undefined); // not needed when the loose ref is there
  const loose = await read(`${p.repo}/${REF}`);
  if (loose !== null) return parse(loose.toString('utf8'), `${p.repo}/${REF}`);
  const packed = await packedRead;
  return packed === null ? null : (parsePackedRefs(packed.toString('utf8')).get(REF) ?? null);
}

/**
 * The ref's new content written under its temporary name; the function returned renames it over
 * the ref (the one step that makes a push visible), so the write can go alongside other work.
 */
export async function writeRemoteHeadTemp(t: Transport, p: MasterHostPaths, commit: string): Promise<() => Promise<void>> {
  const file = `${p.repo}/${REF}`;
  const tmp = `${file.slice(0, file.lastIndexOf('/'))}/${TMP_REF_PREFIX}${randomTag()}`;
  await t.writeFile(tmp, `${commit}\n`);
  return () => t.rename(tmp, file);
}

/** Remove temporary files of pushes that died (the caller holds the push lock). Best effort. */
export async function clearLeftovers(t: Transport, p: MasterHostPaths, log: Logger): Promise<number> {
  let removed = 0;
  const places: [string, string[]][] = [
    [`${p.repo}/objects/pack`, [TMP_PACK_PREFIX, TMP_IDX_PREFIX]],
    [`${p.repo}/refs/heads`, [TMP_REF_PREFIX]],
    [p.repo, [TMP_HEAD_PREFIX, TMP_CONFIG_PREFIX]],
  ];
  // The three listings go out together: one round trip instead of three.
  await Promise.all(places.map(async ([dir, prefixes]) => {
    let entries;
    try {
      entries = await t.list(dir);
    } catch (e) {
      if (e instanceof NotFoundError) return;
      throw e;
    }
    for (const e of entries) {
      if (!prefixes.some((x) => e.name.startsWith(x))) continue;
      try {
        await t.remove(`${dir}/${e.name}`);
        removed++;
      } catch (err) {
        log.debug(`could not remove leftover ${dir}/${e.name}: ${errorMessage(err)}`);
      }
    }
  }));
  return removed;
}
