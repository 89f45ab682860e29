import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';
import { hashObject, type ObjectType } from '../packages/shared/src/git/objects.ts';
import { encodeEntryHeader } from '../packages/shared/src/git/pack-entry.ts';
import { buildIndex } from '../packages/shared/src/git/pack-index.ts';

// Packs and indexes built byte by byte, honest or lying, as an attacker would: an entry may
// claim an id its content does not hash to, an index may list an id twice or out of order.

export interface CraftEntry {
  type: ObjectType;
  content: Buffer;
  /** The id the index gives this entry (default: its true id). */
  claim?: string;
}

export interface CraftedPack {
  pack: Buffer;
  idx: Buffer;
  /** Pack checksum (hex): an honest name is pack-<checksum>.pack. */
  checksum: string;
  ids: string[];
}

export function craftPack(entries: CraftEntry[], opts: { idx?: (e: { oid: Buffer; crc: number; offset: number }[]) => void } = {}): CraftedPack {
  const parts: Buffer[] = [];
  const head = Buffer.alloc(12);
  head.write('PACK', 0, 'latin1');
  head.writeUInt32BE(2, 4);
  head.writeUInt32BE(entries.length, 8);
  parts.push(head);
  let offset = 12;
  const index: { oid: Buffer; crc: number; offset: number }[] = [];
  const ids: string[] = [];
  for (const e of entries) {
    const h = encodeEntryHeader(e.type, e.content.length);
    const data = zlib.deflateSync(e.content);
    const oid = e.claim ?? hashObject(e.type, e.content);
    ids.push(oid);
    index.push({ oid: Buffer.from(oid, 'hex'), crc: zlib.crc32(data, zlib.crc32(h)), offset });
    parts.push(h, data);
    offset += h.length + data.length;
  }
  const body = Buffer.concat(parts);
  const sha = crypto.createHash('sha1').update(body).digest();
  opts.idx?.(index);
  return { pack: Buffer.concat([body, sha]), idx: buildIndex(index, sha), checksum: sha.toString('hex'), ids };
}

/** Write pack + idx into a repository's pack dir under `name` (default: the honest name). */
export function placePack(repoDir: string, p: CraftedPack, name = `pack-${p.checksum}`): string {
  const dir = path.join(repoDir, 'objects', 'pack');
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, `${name}.pack`), p.pack);
  fs.writeFileSync(path.join(dir, `${name}.idx`), p.idx);
  return path.join(dir, `${name}.pack`);
}

/** A commit object's bytes, as git writes them. */
export function commitBytes(tree: string, parents: string[], time: number, message = 'crafted\n'): Buffer {
  const who = `pacha <pacha@test> ${time} +0000`;
  return Buffer.from(`tree ${tree}\n${parents.map((p) => `parent ${p}\n`).join('')}author ${who}\ncommitter ${who}\n\n${message}`);
}
