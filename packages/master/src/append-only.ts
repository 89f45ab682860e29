import fsp from 'node:fs/promises';
import path from 'node:path';
import { parsePackedRefs } from '@pacha/shared/git/packed-refs';
import { Repository } from '@pacha/shared/git/repository';
import { Refusal } from './host-view.ts';
import { checkForward } from './forward.ts';

// The rules that keep a host's history append-only, so that a compromised host cannot erase
// its own past (DESIGN.md, "Master host tree"). Paths are relative to the host's folder.
//
// - A host writes only under repo/; its hooks (pacha_pre/, pacha_post/) and everything else
//   in its folder are read-only.
// - Object files (repo/objects/xx/<hash>, repo/objects/pack/pack-<hash>.{pack,idx,...}) are
//   never overwritten, truncated, removed or renamed away once they exist, except files the
//   same session created under that name and has not yet made part of history (an upload it
//   is still finishing): a rename onto an object name, or any ref update, ends that. Renaming a file onto an existing
//   object with the same bytes succeeds and drops the source, so a push retried after a cut
//   connection goes through.
// - repo/refs/heads/main is never removed, truncated or renamed away; it changes only by a
//   rename onto it, and only to a commit that exists in the repository and descends from the
//   commit it names now.
// - Directories are never renamed (renaming objects/ away would remove every object).

const OBJECT_RE = /^repo\/objects\/(?:[0-9a-f]{2}\/[0-9a-f]{38}(?:[0-9a-f]{24})?|pack\/pack-[0-9a-f]{40}(?:[0-9a-f]{24})?\.(?:pack|idx|rev|bitmap|keep|mtimes|promisor))$/;
export const MAIN_REF = 'repo/refs/heads/main';
// Repository files that say how the repository is read (config could even name commands that
// git runs): created once by the first push, never changed by the host afterwards.
const CREATE_ONCE_RE = /^repo\/(?:HEAD|config|description|packed-refs|shallow|info\/.+|objects\/info\/.+)$/;

export function isObjectPath(rel: string): boolean {
  return OBJECT_RE.test(rel);
}

/** Objects, the ref and the create-once files: what a rename makes permanent. */
export function isProtectedPath(rel: string): boolean {
  return isImmutable(rel) || rel === MAIN_REF;
}

/** Never changed once it exists (unless this session created it). */
function isImmutable(rel: string): boolean {
  return OBJECT_RE.test(rel) || CREATE_ONCE_RE.test(rel);
}

export function isWritableArea(rel: string): boolean {
  return rel === 'repo' || rel.startsWith('repo/');
}

function denyOutsideRepo(rel: string): void {
  if (!isWritableArea(rel)) {
    throw new Refusal('denied', `${rel || '.'}: read-only for the host (it may write only under repo/; hooks are managed on the master)`);
  }
  if (rel === 'repo/hooks' || rel.startsWith('repo/hooks/')) {
    throw new Refusal('denied', `${rel}: git hooks cannot be written on the master`);
  }
}

/** Files this session created: it may still rewrite, rename or remove them. */
export type CreatedSet = Set<string>;

export function checkOpenForWrite(rel: string, exists: boolean, real: string, created: CreatedSet): void {
  denyOutsideRepo(rel);
  if (rel === 'repo') throw new Refusal('denied', 'repo: is a directory');
  // Also when absent: a loose ref created directly would bypass the check (packed-refs may hold main).
  if (rel === MAIN_REF) throw new Refusal('denied', `${rel}: the ref is replaced only by renaming a new file onto it`);
  if (!exists || created.has(real)) return;
  if (isObjectPath(rel)) throw new Refusal('denied', `${rel}: objects are append-only and this one exists already`);
  if (isImmutable(rel)) throw new Refusal('denied', `${rel}: written once by the first push, never changed afterwards`);
}

/**
 * How to open a file for writing: 'direct', or 'verify-same' for an existing permanent file
 * (object, HEAD, config...): the writes go to a private copy and are accepted at close only
 * when the result has the same bytes, so rewriting identical content (a retried push) works
 * and anything else is refused without touching the file.
 */
export function openForWrite(rel: string, exists: boolean, real: string, created: CreatedSet): 'direct' | 'verify-same' {
  try {
    checkOpenForWrite(rel, exists, real, created);
    return 'direct';
  } catch (e) {
    if (exists && rel !== MAIN_REF && isImmutable(rel)) return 'verify-same';
    throw e;
  }
}

export { sameContent };

export function checkRemove(rel: string, real: string, created: CreatedSet): void {
  denyOutsideRepo(rel);
  if (created.has(real)) return;
  if (isObjectPath(rel)) throw new Refusal('denied', `${rel}: objects are append-only and cannot be removed`);
  if (isImmutable(rel)) throw new Refusal('denied', `${rel}: cannot be removed by the host`);
  if (rel === MAIN_REF) throw new Refusal('denied', `${rel}: the ref cannot be removed`);
}

export function checkMkdir(rel: string): void {
  denyOutsideRepo(rel);
}

export function checkDirChange(rel: string): void {
  denyOutsideRepo(rel);
  if (rel === 'repo' || rel === 'repo/objects' || rel === 'repo/refs' || rel === 'repo/refs/heads') {
    // Removing these would only work when empty, but refuse plainly.
    throw new Refusal('denied', `${rel}: a repository folder the host cannot remove`);
  }
}

export type RenameOutcome = { kind: 'rename' } | { kind: 'same-object' } | { kind: 'ref'; old: string | null; new: string };

/**
 * Decide a rename. Throws Refusal when it would break the rules; for the ref, checks that the
 * new commit exists and descends from the old one (the caller holds the host's ref lock).
 */
export async function checkRename(fromRel: string, fromReal: string, toRel: string, toReal: string, repoReal: string, created: CreatedSet): Promise<RenameOutcome> {
  denyOutsideRepo(fromRel);
  denyOutsideRepo(toRel);
  const src = await fsp.lstat(fromReal).catch(() => null);
  if (src === null) throw new Refusal('missing', `${fromRel}: no such file`);
  if (!src.isFile()) throw new Refusal('denied', `${fromRel}: only files can be renamed`);
  if (!created.has(fromReal)) {
    if (isImmutable(fromRel)) throw new Refusal('denied', `${fromRel}: cannot be moved by the host`);
    if (fromRel === MAIN_REF) throw new Refusal('denied', `${fromRel}: the ref cannot be moved away`);
  }
  const dst = await fsp.lstat(toReal).catch(() => null);
  if (dst !== null && dst.isDirectory()) throw new Refusal('denied', `${toRel}: is a directory`);
  if (dst !== null && isObjectPath(toRel) && !created.has(toReal)) {
    if (await sameContent(fromReal, toReal)) return { kind: 'same-object' };
    throw new Refusal('denied', `${toRel}: objects are append-only and this one exists already with other content`);
  }
  if (dst !== null && isImmutable(toRel) && !created.has(toReal)) {
    if (await sameContent(fromReal, toReal)) return { kind: 'same-object' };
    throw new Refusal('denied', `${toRel}: written once by the first push, never changed afterwards`);
  }
  if (toRel === MAIN_REF) {
    const newOid = parseRef(await fsp.readFile(fromReal, 'utf8'), fromRel);
    // The current value: the loose ref, else the packed one (git reads them in that order).
    const old = dst !== null ? parseRef(await fsp.readFile(toReal, 'utf8'), toRel) : await packedMain(path.join(repoReal, 'packed-refs'));
    const repo = new Repository(repoReal);
    try {
      checkForward(repo, old, newOid);
    } finally {
      repo.close();
    }
    return { kind: 'ref', old, new: newOid };
  }
  return { kind: 'rename' };
}

async function packedMain(file: string): Promise<string | null> {
  return parsePackedRefs(await fsp.readFile(file, 'utf8').catch(() => '')).get('refs/heads/main') ?? null;
}

function parseRef(text: string, what: string): string {
  const oid = text.trim();
  if (!/^(?:[0-9a-f]{40}|[0-9a-f]{64})$/.test(oid)) {
    throw new Refusal('denied', `${what}: not a commit id (accepted: 40 or 64 lowercase hex digits and a newline)`);
  }
  return oid;
}

async function sameContent(a: string, b: string): Promise<boolean> {
  const [sa, sb] = await Promise.all([fsp.stat(a), fsp.stat(b)]);
  if (sa.size !== sb.size) return false;
  const [fa, fb] = await Promise.all([fsp.open(a, 'r'), fsp.open(b, 'r')]);
  try {
    const size = 1 << 16;
    const ba = Buffer.alloc(size);
    const bb = Buffer.alloc(size);
    for (let pos = 0; pos < sa.size; pos += size) {
      const [ra, rb] = await Promise.all([fa.read(ba, 0, size, pos), fb.read(bb, 0, size, pos)]);
      if (ra.bytesRead !== rb.bytesRead || !ba.subarray(0, ra.bytesRead).equals(bb.subarray(0, rb.bytesRead))) return false;
    }
    return true;
  } finally {
    await Promise.all([fa.close(), fb.close()]);
  }
}
