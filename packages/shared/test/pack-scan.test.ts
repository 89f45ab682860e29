import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { hashObject } from '../src/git/objects.ts';
import crypto from 'node:crypto';
import zlib from 'node:zlib';
import { PackIndex, buildIndex } from '../src/git/pack-index.ts';
import { PackReader } from '../src/git/pack-reader.ts';
import { PackScanner } from '../src/git/pack-scan.ts';
import { craftPack } from '../../../test-support/craft-pack.ts';

// The pack scanned as its bytes arrive (the master, during an upload), then matched with its
// index: the same answer as verifying the pair whole, whatever the pieces the bytes come in.

let dirs: string[] = [];
afterEach(() => {
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
  dirs = [];
});
function tmp(): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'pacha-scan-'));
  dirs.push(d);
  return d;
}

/** Feed the pack in pieces of random sizes (a fixed seed) and return the scan. */
function scan(pack: Buffer, seed = 1) {
  const s = new PackScanner();
  let x = seed;
  for (let pos = 0; pos < pack.length; ) {
    x = (x * 1103515245 + 12345) >>> 0;
    const n = 1 + (x % 70_000);
    s.push(Buffer.from(pack.subarray(pos, pos + n)));
    pos += n;
  }
  s.end();
  return s.result();
}

/** Write pack + idx and open them. */
function open(dir: string, pack: Buffer, idx: Buffer): PackReader {
  fs.writeFileSync(path.join(dir, 'p.pack'), pack);
  fs.writeFileSync(path.join(dir, 'p.idx'), idx);
  return new PackReader(path.join(dir, 'p.pack'), PackIndex.load(path.join(dir, 'p.idx')));
}

describe('PackScanner (a pack checked as it arrives)', () => {
  it('finds every entry of a pack native git wrote (with deltas) and stops at the first delta; the index matches, the rest verifies', async () => {
    const d = tmp();
    const repo = path.join(d, 'r.git');
    execFileSync('git', ['init', '-q', '--bare', repo]);
    // Blobs alike enough for git to store some as deltas, behind whole ones.
    const ids: string[] = [];
    for (let i = 0; i < 300; i++) {
      const text = `line ${i}\n`.repeat(40) + 'common tail\n'.repeat(200);
      ids.push(execFileSync('git', ['--git-dir', repo, 'hash-object', '-w', '--stdin'], { input: text, encoding: 'utf8' }).trim());
    }
    const name = execFileSync('git', ['--git-dir', repo, 'pack-objects', '-q', path.join(d, 'p')], { input: ids.join('\n') + '\n', encoding: 'utf8' }).trim();
    const pack = fs.readFileSync(path.join(d, `p-${name}.pack`));
    const reader = open(d, pack, fs.readFileSync(path.join(d, `p-${name}.idx`)));
    const s = scan(pack);
    expect(s.offsets.length).toBeGreaterThan(0);
    expect(s.complete).toBe(false);
    expect(reader.verifyWhole()).toEqual([]);
    const m = reader.matchScanned(s);
    expect(m.problems).toEqual([]);
    expect(m.from).toBe(s.offsets.length);
    expect(await reader.verifyEntries({}, m.from)).toEqual([]);
    reader.close();
  });

  it('scans a pack of whole objects to its trailer, in any pieces, and the index matches', () => {
    const blobs = Array.from({ length: 500 }, (_, i) => ({ type: 'blob' as const, content: Buffer.from(`blob ${i} `.repeat(1 + (i % 97))) }));
    const p = craftPack(blobs);
    const reader = open(tmp(), p.pack, p.idx);
    for (const seed of [1, 2, 3]) {
      const s = scan(p.pack, seed);
      expect(s.complete).toBe(true);
      expect(s.oids).toEqual(p.ids);
      expect(reader.matchScanned(s)).toEqual({ problems: [], from: 500 });
    }
    reader.close();
  });

  it('an index that lies about an id, a CRC or an offset does not match what was scanned', () => {
    const blobs = Array.from({ length: 50 }, (_, i) => ({ type: 'blob' as const, content: Buffer.from(`b${i}\n`) }));
    const claim = hashObject('blob', Buffer.from('another\n'));
    const lying = craftPack(blobs.map((b, i) => (i === 40 ? { ...b, claim } : b)));
    let reader = open(tmp(), lying.pack, lying.idx);
    expect(reader.matchScanned(scan(lying.pack)).problems.join()).toContain(`object ${claim}: content hashes to ${hashObject('blob', blobs[40].content)}`);
    reader.close();
    const badCrc = craftPack(blobs, { idx: (e) => (e[7].crc ^= 1) });
    reader = open(tmp(), badCrc.pack, badCrc.idx);
    expect(reader.matchScanned(scan(badCrc.pack)).problems.join()).toContain('fails its CRC-32');
    reader.close();
    const badOffset = craftPack(blobs, { idx: (e) => (e[9].offset += 1) });
    reader = open(tmp(), badOffset.pack, badOffset.idx);
    expect(reader.matchScanned(scan(badOffset.pack)).problems.join()).toMatch(/at offset \d+, the pack has an entry at/);
    reader.close();
  });

  it('bytes after an entry\'s zlib stream (an index that hides them in the entry, with its CRC-32) are refused both ways', async () => {
    const one = craftPack([{ type: 'blob', content: Buffer.from('one\n') }]);
    const two = craftPack([{ type: 'blob', content: Buffer.from('two\n') }]);
    const e1 = one.pack.subarray(12, one.pack.length - 20);
    const e2 = two.pack.subarray(12, two.pack.length - 20);
    const junk = Buffer.from('JUNK');
    const head = Buffer.from(one.pack.subarray(0, 12));
    head.writeUInt32BE(2, 8);
    const body = Buffer.concat([head, e1, junk, e2]);
    const sha = crypto.createHash('sha1').update(body).digest();
    const idx = buildIndex(
      [
        { oid: Buffer.from(one.ids[0], 'hex'), crc: zlib.crc32(Buffer.concat([e1, junk])), offset: 12 },
        { oid: Buffer.from(two.ids[0], 'hex'), crc: zlib.crc32(e2), offset: 12 + e1.length + junk.length },
      ],
      sha,
    );
    const pack = Buffer.concat([body, sha]);
    const reader = open(tmp(), pack, idx);
    expect((await reader.verify()).join()).toContain('has 4 bytes after its zlib stream');
    // Scanned, the first entry ends at its stream: its CRC-32 over entry and junk does not match.
    expect(reader.matchScanned(scan(pack)).problems.join()).toContain(`object ${one.ids[0]}: fails its CRC-32`);
    reader.close();
  });

  it('bytes between the last entry and the trailer are found', () => {
    const p = craftPack([{ type: 'blob', content: Buffer.from('x\n') }]);
    const body = Buffer.concat([p.pack.subarray(0, p.pack.length - 20), Buffer.from('junk')]);
    const s = scan(Buffer.concat([body, Buffer.alloc(20)]));
    expect(s.complete).toBe(true);
    expect(s.end).toBe(p.pack.length - 20);
    // Matched against a pack file of that size, the junk is named.
    const d = tmp();
    fs.writeFileSync(path.join(d, 'p.pack'), Buffer.concat([body, Buffer.alloc(20)]));
    const reader = new PackReader(path.join(d, 'p.pack'), new PackIndex('p.idx', p.idx));
    expect(reader.matchScanned(s).problems.join()).toContain('4 bytes after the last entry');
    reader.close();
  });

  it('stops at what it does not check itself (a bad object by the caller\'s rules, garbage), leaving the rest to the full check', () => {
    const p = craftPack([
      { type: 'blob', content: Buffer.from('fine\n') },
      { type: 'tree', content: Buffer.from('not a tree') },
      { type: 'blob', content: Buffer.from('after\n') },
    ]);
    const s = new PackScanner((_oid, type) => (type === 'tree' ? 'bad tree' : null));
    s.push(p.pack);
    s.end();
    const r = s.result();
    expect(r.offsets.length).toBe(1);
    expect(r.complete).toBe(false);
    const g = new PackScanner();
    g.push(Buffer.concat([p.pack.subarray(0, 12), Buffer.alloc(100, 0xff)]));
    g.end();
    expect(g.result()).toMatchObject({ offsets: [], end: 12, complete: false });
  });
});
