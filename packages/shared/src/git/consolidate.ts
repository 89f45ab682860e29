import fs from 'node:fs';
import path from 'node:path';
import { TYPE_OF_PACK } from './objects.ts';
import { PackIndex } from './pack-index.ts';
import { PackWriter } from './pack-writer.ts';

// Every snapshot adds a pack; a daemon snapshotting each minute would pile up thousands, and
// every reader (git, isomorphic-git, our own has()) looks through all of them. When there are
// many small packs they are merged into one by copying their entries as they are (no
// re-compression). Packs holding deltas (written by other tools) are left alone.

export interface ConsolidateOptions {
  /** Merge when at least this many small packs exist. */
  minPacks?: number;
  /** Only packs up to this size are merged (large file packs stay on their own). */
  smallPackBytes?: number;
}

export interface RawEntry {
  oid: string;
  type: 'commit' | 'tree' | 'blob' | 'tag';
  size: number;
  /** The entry's zlib stream, as stored. */
  data: Buffer;
}

/** Whole-object entries of one pack read into memory; null when it holds deltas. */
export function readPackEntries(idxFile: string): RawEntry[] | null {
  const idx = PackIndex.load(idxFile);
  const buf = fs.readFileSync(idx.packFile);
  const out: RawEntry[] = [];
  for (let i = 0; i < idx.count; i++) {
    const offset = idx.offsetAt(i);
    const end = idx.entryEnd(offset, buf.length);
    let c = buf[offset];
    const type = TYPE_OF_PACK[(c >> 4) & 7];
    if (type === undefined) return null;
    let size = c & 15;
    let shift = 4;
    let p = offset + 1;
    while (c & 0x80) {
      c = buf[p++];
      size += (c & 0x7f) * 2 ** shift;
      shift += 7;
    }
    out.push({ oid: idx.oidAt(i), type, size, data: buf.subarray(p, end) });
  }
  return out;
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
