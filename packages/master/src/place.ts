import crypto from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { errnoOf, errorMessage } from '@pacha/shared/errors';
import { syncDir } from '@pacha/shared/git/fsync';
import { PackIndex } from '@pacha/shared/git/pack-index';
import { PackReader } from '@pacha/shared/git/pack-reader';
import { MAIN_REF, REPO_CONFIG, REPO_HEAD, Repository, readRefIn } from '@pacha/shared/git/repository';
import type { ObjectType } from '@pacha/shared/git/objects';
import { MASTER_COPY_PREFIX, type Placeable } from './append-only.ts';
import type { HostState } from './host-state.ts';
import { checkForward } from './forward.ts';
import { Refusal } from './host-view.ts';
import { verifyPackEntries, warmPackCheck } from './pack-check.ts';
import type { UploadStream } from './pack-stream.ts';
import type { ScannedEntries } from '@pacha/shared/git/pack-scan';

// A rename of a host's temporary file onto a pack, an index, the ref, HEAD or config, done as
// copy-on-rename: the master copies the bytes into a file it creates itself, checks that copy
// (the bytes it holds, not the host's file, which the host may still be writing through an open
// handle on any channel), fsyncs it, renames it into place, fsyncs the folder, and removes the
// host's file. So no handle of the host ever refers to an object or the ref.
//
// The checks, by target:
//   pack  its trailer is the SHA-1 of its content and its name; a version 2 or 3 header. Without
//         its index no reader (git or pacha) looks at it.
//   idx   only after its pack; verified whole against the pack: ids sorted without duplicates,
//         every CRC-32, entries tiling the pack, every object inflating and hashing to its id,
//         deltas only against bases in the same pack, commits and trees well-formed as
//         `git fsck --strict` wants them, no tags.
//   ref   a commit id, and forward (forward.ts).
//   HEAD and config: exactly what pacha writes.
// An existing pack, index, HEAD or config is never replaced: the same bytes again (a retried
// push) are accepted and dropped, other bytes refused.

/** Object types remembered for the forward check at most (some 100 bytes each). */
const MAX_VERIFIED = 2_000_000;

/** Packs placed from their upload whose scanned entries are kept for their index (the oldest dropped: its index is then checked in full). */
const MAX_SCANNED = 4;

/** HEAD, config and the ref are small: a larger temporary file is refused unread. */
const SMALL_FILE = 4096;
const CHUNK = 1024 * 1024;

export type PlaceOutcome = { kind: 'placed' | 'same'; /** A pack placed from its upload stream: the entries scanned on the way in. */ scanned?: number } | { kind: 'ref'; old: string | null; next: string };

function refuse(message: string): never {
  throw new Refusal('denied', message);
}

/** Copy src into a new file of the master's beside dst; returns its path and the SHA-1 of all but the last 20 bytes. */
async function copyIn(src: string, dst: string, mode: number, maxSize?: number): Promise<{ file: string; size: number; bodySha: string; tail: Buffer }> {
  const from = await fsp.open(src, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW | fs.constants.O_NONBLOCK);
  const file = path.join(path.dirname(dst), `${MASTER_COPY_PREFIX}${crypto.randomBytes(8).toString('hex')}`);
  let to: fsp.FileHandle | undefined;
  try {
    const st = await from.stat();
    if (!st.isFile()) refuse(`${path.basename(src)}: not a regular file`);
    if (maxSize !== undefined && st.size > maxSize) refuse(`${path.basename(src)}: ${st.size} bytes, more than the ${maxSize} accepted here`);
    to = await fsp.open(file, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_NOFOLLOW, mode);
    // The last 20 bytes (a pack's trailer) are held back from the hash until the end is known.
    const hash = crypto.createHash('sha1');
    let held = Buffer.alloc(0);
    let size = 0;
    const buf = Buffer.allocUnsafe(CHUNK);
    for (;;) {
      const { bytesRead } = await from.read(buf, 0, buf.length, size);
      if (bytesRead === 0) break;
      const piece = buf.subarray(0, bytesRead);
      await to.write(piece, 0, bytesRead, size);
      size += bytesRead;
      if (maxSize !== undefined && size > maxSize) refuse(`${path.basename(src)}: more than the ${maxSize} bytes accepted here`);
      const all = Buffer.concat([held, piece]);
      const cut = Math.max(0, all.length - 20);
      hash.update(all.subarray(0, cut));
      held = Buffer.from(all.subarray(cut));
    }
    await to.sync();
    return { file, size, bodySha: hash.digest('hex'), tail: held };
  } catch (e) {
    await fsp.rm(file, { force: true });
    throw e;
  } finally {
    await to?.close();
    await from.close();
  }
}

async function sameBytes(a: string, b: string): Promise<boolean> {
  const [sa, sb] = await Promise.all([fsp.stat(a), fsp.stat(b)]);
  if (sa.size !== sb.size) return false;
  const [fa, fb] = await Promise.all([fsp.open(a, 'r'), fsp.open(b, 'r')]);
  try {
    const ba = Buffer.allocUnsafe(CHUNK);
    const bb = Buffer.allocUnsafe(CHUNK);
    for (let pos = 0; pos < sa.size; pos += CHUNK) {
      const [ra, rb] = await Promise.all([fa.read(ba, 0, CHUNK, pos), fb.read(bb, 0, CHUNK, pos)]);
      if (ra.bytesRead !== rb.bytesRead || !ba.subarray(0, ra.bytesRead).equals(bb.subarray(0, rb.bytesRead))) return false;
    }
    return true;
  } finally {
    await Promise.all([fa.close(), fb.close()]);
  }
}

async function exists(p: string): Promise<boolean> {
  try {
    await fsp.lstat(p);
    return true;
  } catch (e) {
    if (errnoOf(e) === 'ENOENT') return false;
    throw e;
  }
}

/** Check a pack's copy (header, checksum = name); returns the number of objects its header gives. */
function checkPack(copy: { size: number; bodySha: string; tail: Buffer; file: string }, sha: string): number {
  let count: number;
  if (copy.size < 32) refuse(`pack-${sha}.pack: ${copy.size} bytes is too short to be a pack`);
  const fd = fs.openSync(copy.file, 'r');
  try {
    const head = Buffer.alloc(12);
    fs.readSync(fd, head, 0, 12, 0);
    if (head.toString('latin1', 0, 4) !== 'PACK' || ![2, 3].includes(head.readUInt32BE(4))) refuse(`pack-${sha}.pack: not a git pack (version 2 or 3)`);
    count = head.readUInt32BE(8);
  } finally {
    fs.closeSync(fd);
  }
  const trailer = copy.tail.toString('hex');
  if (trailer !== copy.bodySha) refuse(`pack-${sha}.pack: its checksum does not match its content (damaged upload?)`);
  if (trailer !== sha) refuse(`pack-${sha}.pack: its checksum is ${trailer}; a pack is named pack-<its checksum>.pack`);
  return count;
}

/** Verify an index copy whole against its (already placed) pack. */
async function checkIdx(idxCopy: string, packFile: string, sha: string, types: Map<string, ObjectType>, checksummed: boolean, scanned?: ScannedEntries): Promise<void> {
  let count: number;
  try {
    const fd = fs.openSync(packFile, 'r');
    try {
      const head = Buffer.alloc(12);
      fs.readSync(fd, head, 0, 12, 0);
      count = head.readUInt32BE(8);
    } finally {
      fs.closeSync(fd);
    }
  } catch (e) {
    if (errnoOf(e) === 'ENOENT') refuse(`pack-${sha}.idx: its pack pack-${sha}.pack is not in place (rename the .pack first, then the .idx)`);
    throw e;
  }
  // Bounded before it is read: an index holds 28 bytes per object (+8 for a large offset).
  const size = (await fsp.stat(idxCopy)).size;
  if (size > 8 + 1024 + count * 36 + 40) refuse(`pack-${sha}.idx: ${size} bytes, too large for a pack of ${count} objects`);
  let reader: PackReader;
  try {
    reader = new PackReader(packFile, new PackIndex(`pack-${sha}.idx`, await fsp.readFile(idxCopy)));
  } catch (e) {
    refuse(`pack-${sha}.idx: ${errorMessage(e)}`);
  }
  try {
    if (reader.index.packChecksum !== sha) refuse(`pack-${sha}.idx: it indexes pack ${reader.index.packChecksum}`);
    // The master checked this pack's checksum itself when it placed it (checkPack); it cannot change since.
    let problems = reader.verifyWhole({ checksummed: checksummed ? sha : undefined });
    let from = 0;
    if (problems.length === 0 && scanned) {
      // The entries scanned as the pack came in: the index must list exactly them.
      const m = reader.matchScanned(scanned);
      problems = m.problems;
      from = m.from;
      if (problems.length === 0) scanned.oids.forEach((oid, k) => types.set(oid, scanned.types[k]));
    }
    if (problems.length === 0) {
      try {
        const r = await verifyPackEntries(reader, idxCopy, from);
        problems = r.problems;
        for (const [oid, type] of r.objects) types.set(oid, type);
      } catch (e) {
        problems = [errorMessage(e)];
      }
    }
    if (problems.length > 0) refuse(`pack-${sha}: refused, it does not verify: ${problems.slice(0, 3).join('; ')}`);
  } finally {
    reader.close();
  }
}

/**
 * Place the host's temporary file `fromReal` at `toReal` (the caller holds the host's lock and
 * has checked the names with checkRename). Throws Refusal when the copy does not check out.
 */
export async function place(fromReal: string, toReal: string, target: Placeable, repoReal: string, host: HostState, stream?: UploadStream): Promise<PlaceOutcome> {
  const objectish = target.kind === 'pack' || target.kind === 'idx';
  const small = target.kind === 'ref' || target.kind === 'head' || target.kind === 'config';
  // A pack the master received in one run of writes is placed from the copy it made meanwhile.
  let scanned: ScannedEntries | undefined;
  let copy: Awaited<ReturnType<typeof copyIn>> | undefined;
  if (stream && target.kind === 'pack' && (await fsp.lstat(fromReal)).size === stream.next) {
    const d = await stream.finish();
    if (d.ok) {
      copy = { file: stream.copyFile, size: d.size, bodySha: d.bodySha, tail: Buffer.from(d.tail, 'hex') };
      scanned = d.scanned;
    }
  } else stream?.abort();
  copy ??= await copyIn(fromReal, toReal, objectish ? 0o444 : 0o644, small ? SMALL_FILE : undefined);
  const types = new Map<string, ObjectType>();
  let outcome: PlaceOutcome = { kind: 'placed' };
  try {
    if (target.kind === 'pack') {
      const count = checkPack(copy, target.sha);
      // Entries not scanned on the way in are checked with the index: start its threads now.
      if (!scanned?.complete) warmPackCheck(count);
    }
    else if (target.kind === 'idx') await checkIdx(copy.file, path.join(path.dirname(toReal), `pack-${target.sha}.pack`), target.sha, types, host.checksummed.has(target.sha), host.scanned.get(target.sha));
    else if (target.kind === 'head' || target.kind === 'config') {
      const want = target.kind === 'head' ? REPO_HEAD : REPO_CONFIG;
      if ((await fsp.readFile(copy.file, 'utf8')) !== want) refuse(`repo/${target.kind === 'head' ? 'HEAD' : 'config'}: accepted content is exactly ${JSON.stringify(want)}`);
    } else {
      const text = await fsp.readFile(copy.file, 'utf8');
      const next = text.trim();
      if (!/^[0-9a-f]{40}$/.test(next) || text !== `${next}\n`) refuse('refs/heads/main: not a commit id (accepted: 40 lowercase hex digits and a newline)');
      // The current main: the loose ref, else the packed one (git reads them in that order).
      const old = readRefIn(repoReal, MAIN_REF);
      const repo = new Repository(repoReal);
      try {
        checkForward(repo, old, next, (oid) => host.verified.get(oid));
      } finally {
        repo.close();
      }
      outcome = { kind: 'ref', old, next };
    }
    if (target.kind !== 'ref' && (await exists(toReal))) {
      // Never replaced: the same bytes again are a retried push.
      if (!(await sameBytes(copy.file, toReal))) refuse(`${path.basename(toReal)}: exists already with other content; history is append-only`);
      outcome = { kind: 'same' };
      await fsp.rm(copy.file, { force: true });
    } else {
      await fsp.rename(copy.file, toReal);
      syncDir(path.dirname(toReal));
    }
  } catch (e) {
    await fsp.rm(copy.file, { force: true });
    throw e;
  }
  await fsp.rm(fromReal, { force: true });
  // Only now are the verified objects in the repository.
  // A hint for the forward check, bounded: a host placing packs without moving main holds no more
  // memory (the forward check then reads the types from the repository).
  if (host.verified.size + types.size > MAX_VERIFIED) host.verified.clear();
  for (const [oid, type] of types) host.verified.set(oid, type);
  if (target.kind === 'pack') host.checksummed.add(target.sha);
  // Scanned entries count only for the copy they were scanned in, the one now in place.
  if (target.kind === 'pack' && outcome.kind === 'placed' && scanned) {
    host.scanned.set(target.sha, scanned);
    // Kept for the index that follows: a few at most (a host placing packs without their index holds no more memory).
    for (const sha of host.scanned.keys()) if (host.scanned.size > MAX_SCANNED) host.scanned.delete(sha);
    outcome.scanned = scanned.offsets.length;
  }
  if (target.kind === 'idx') host.scanned.delete(target.sha);
  if (outcome.kind === 'ref') host.verified.clear();
  return outcome;
}
