import fs from 'node:fs';
import { PackWriter } from '../git/pack-writer.ts';
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
