import fs from 'node:fs';
import path from 'node:path';
import type { Repository } from '../git/repository.ts';
import { type StatePaths, readJson, writeFileAtomic } from '../state.ts';

// What a host's first snapshot leaves for its first push. A snapshot of an empty repository adds
// every object of its commit (nothing is known yet: every file read, every tree built) to its own
// packs and nothing else, so those packs are exactly what an empty master lacks. The push then
// sends them as they are, without walking every tree of the commit to find that out (a third of
// a first push's CPU on 60,000 paths). Anything that does not match (another commit, a pack gone
// or merged) makes the push select objects as always; losing the file costs only that walk.

interface FirstPacksFile {
  commit: string;
  /** Pack names (pack-<checksum>) and their object counts. */
  packs: { name: string; objects: number }[];
}

function file(state: StatePaths): string {
  return path.join(state.dir, 'first-packs.json');
}

/** Record that `commit`'s objects are exactly those of `packFiles` (a first snapshot's packs). */
export function recordFirstPacks(state: StatePaths, commit: string, packs: { packFile: string; count: number }[]): void {
  const body: FirstPacksFile = { commit, packs: packs.map((p) => ({ name: path.basename(p.packFile, '.pack'), objects: p.count })) };
  // Not fsynced: a lost or torn file only means the push walks the trees.
  writeFileAtomic(file(state), JSON.stringify(body) + '\n', 0o600, { durable: false });
}

/** Forget it (a later snapshot: the packs are no longer a commit's whole). */
export function forgetFirstPacks(state: StatePaths): void {
  fs.rmSync(file(state), { force: true });
}

/**
 * The local packs that hold exactly the objects of `commit`, a root commit, when its snapshot
 * recorded them and they are still there as recorded; else null.
 */
export function firstPacks(state: StatePaths, store: Repository, commit: string): { packFile: string; idxFile: string; checksum: string; objects: number; bytes: number }[] | null {
  let rec: FirstPacksFile | undefined;
  try {
    rec = readJson<FirstPacksFile>(file(state));
  } catch {
    return null; // torn: walk instead
  }
  if (rec === undefined || rec.commit !== commit || !Array.isArray(rec.packs) || rec.packs.length === 0) return null;
  const out = [];
  for (const want of rec.packs) {
    const p = store.packs().find((x) => path.basename(x.packFile, '.pack') === want.name);
    // The master accepts a pack only under the name of its checksum.
    if (p === undefined || p.count !== want.objects || want.name !== `pack-${p.index.packChecksum}`) return null;
    out.push({ packFile: p.packFile, idxFile: p.packFile.replace(/\.pack$/, '.idx'), checksum: p.index.packChecksum, objects: p.count, bytes: p.packSize });
  }
  return out;
}
