import fs from 'node:fs';
import path from 'node:path';
import { PackCorruptError } from '../errors.ts';
import type { ObjectType } from './objects.ts';
import { PackReader } from './pack-reader.ts';
import { PackWriter } from './pack-writer.ts';

// Every snapshot adds a pack; a daemon snapshotting each minute would pile up thousands, and
// every reader (git, our own Repository) looks through all of them. When there are
// many small packs they are merged into one by copying their entries as they are (no
// re-compression). Packs holding deltas (written by other tools) are left alone.

export interface ConsolidateOptions {
  /** Merge when at least this many small packs exist. */
  minPacks?: number;
  /** Only packs up to this size are merged (large file packs stay on their own). */
  smallPackBytes?: number;
}

/** Whole-object entries of one pack as stored (zlib streams, CRC-checked); null when it holds deltas or is damaged. */
export function readPackEntries(idxFile: string): { oid: string; type: ObjectType; size: number; data: Buffer }[] | null {
  const pack = new PackReader(idxFile.replace(/\.idx$/, '.pack'));
  try {
    const out = [];
    for (let i = 0; i < pack.count; i++) {
      const e = pack.storedEntry(i);
      if (e === undefined) return null;
      out.push({ oid: pack.index.oidAt(i), type: e.type, size: e.size, data: e.data });
    }
    return out;
  } catch (e) {
    if (e instanceof PackCorruptError) return null; // left alone: pacha-master verify / fsck report it
    throw e;
  } finally {
    pack.close();
  }
}

export async function consolidatePacks(repoDir: string, opts: ConsolidateOptions = {}): Promise<{ packs: number; objects: number } | null> {
  const minPacks = opts.minPacks ?? 32;
  const small = opts.smallPackBytes ?? 16 * 1024 * 1024;
  const packDir = path.join(repoDir, 'objects', 'pack');
  let names: string[];
  try {
    names = fs.readdirSync(packDir);
  } catch {
    return null;
  }
  const candidates = names
    .filter((n) => n.endsWith('.idx') && names.includes(n.replace(/\.idx$/, '.pack')))
    .map((n) => path.join(packDir, n))
    .filter((f) => fs.statSync(f.replace(/\.idx$/, '.pack')).size <= small);
  if (candidates.length < minPacks) return null;
  const writer = PackWriter.create(packDir);
  const merged: string[] = [];
  try {
    for (const idxFile of candidates) {
      const entries = readPackEntries(idxFile);
      if (entries === null) continue;
      for (const e of entries) writer.addRawEntry(e);
      merged.push(idxFile);
    }
    if (merged.length < 2) {
      writer.abort();
      return null;
    }
    const done = await writer.finish();
    if (done === null) return null;
    // The new pack is complete and synced: the old ones can go (index first, so that no
    // reader finds an index without its pack).
    for (const idxFile of merged) {
      if (idxFile === done.idxFile) continue;
      fs.rmSync(idxFile, { force: true });
      fs.rmSync(idxFile.replace(/\.idx$/, '.pack'), { force: true });
    }
    return { packs: merged.length, objects: done.count };
  } catch (e) {
    writer.abort();
    throw e;
  }
}
