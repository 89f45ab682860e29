import fs from 'node:fs';
import path from 'node:path';
import { PackWriter } from '../git/pack-writer.ts';
import type { PackReader } from '../git/pack-reader.ts';
import type { Repository } from '../git/repository.ts';

// One pack (version 2, whole objects) of the selected objects plus its .idx, written with the
// snapshot engine's PackWriter. Objects the local repository already stores whole in a pack are
// copied as their stored zlib stream, so a push does not deflate again what the snapshot deflated;
// loose and deltified objects are read and deflated here.

export interface BuiltPack {
  packFile: string;
  idxFile: string;
  /** Pack checksum (hex): names the pack, pack-<checksum>.pack. */
  checksum: string;
  objects: number;
  bytes: number;
  /** Entries copied as stored vs deflated here. */
  copied: number;
  deflated: number;
}

/** A pack + idx to upload: built for the push, or one of the local repository's own. */
export type PushPack = Pick<BuiltPack, 'packFile' | 'idxFile' | 'checksum' | 'objects' | 'bytes'>;

/** The most local packs sent as they are: more would pile small packs up on the master. */
const MAX_REUSED_PACKS = 2;

/**
 * The local packs that hold exactly `oids` (each pack wholly among them, together all of them),
 * to upload as they are instead of copying their entries into a new pack; null when there are
 * none such (then buildPack). This is the first push of a snapshot: its pack, and the pack of
 * its large files, are what the master lacks.
 */
export function reusablePacks(store: Repository, oids: string[]): PushPack[] | null {
  const want = new Set(oids);
  const chosen: PackReader[] = [];
  let covered = 0;
  for (const p of store.packs()) {
    const n = p.count;
    if (n === 0 || covered + n > want.size) continue;
    let all = true;
    for (let i = 0; i < n && all; i++) all = want.has(p.index.oidAt(i));
    if (!all) continue;
    // The master accepts a pack only under the name of its checksum.
    if (path.basename(p.packFile) !== `pack-${p.index.packChecksum}.pack`) return null;
    chosen.push(p);
    covered += n;
  }
  if (covered !== want.size || chosen.length > MAX_REUSED_PACKS) return null;
  // Equal counts, but two packs could share an id and leave another out: every id must be found.
  for (const oid of oids) if (!chosen.some((p) => p.has(oid))) return null;
  return chosen.map((p) => ({ packFile: p.packFile, idxFile: p.packFile.replace(/\.pack$/, '.idx'), checksum: p.index.packChecksum, objects: p.count, bytes: p.packSize }));
}

/** Build pack + idx of `oids` from `store` in the local folder `dir`. */
export async function buildPack(store: Repository, oids: string[], dir: string, onProgress?: (done: number, total: number) => void): Promise<BuiltPack> {
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  // A temporary pack, uploaded then removed: the master's copy is the one made durable.
  const w = PackWriter.create(dir, { durable: false });
  let copied = 0;
  let deflated = 0;
  try {
    for (let i = 0; i < oids.length; i++) {
      const oid = oids[i];
      const stored = store.storedEntry(oid);
      if (stored) {
        w.addRawEntry({ oid, type: stored.type, size: stored.size, data: stored.data });
        copied++;
      } else {
        const obj = store.read(oid);
        w.addObject(obj.type, obj.content, oid);
        deflated++;
      }
      if (onProgress && (i & 1023) === 1023) onProgress(i + 1, oids.length);
    }
  } catch (e) {
    w.abort();
    throw e;
  }
  const done = await w.finish();
  if (!done) throw new Error('buildPack: no objects to pack');
  return { packFile: done.packFile, idxFile: done.idxFile, checksum: done.id, objects: done.count, bytes: done.bytes, copied, deflated };
}
