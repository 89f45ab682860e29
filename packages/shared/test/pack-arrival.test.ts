import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { craftPack, type CraftEntry, type CraftedPack } from '@pacha/test-support/craft-pack';
import { hashObject } from '@pacha/shared/git/objects';
import { CHECK_FROM, PackArrivalCheck } from '@pacha/shared/git/pack-arrival';
import { BlobSource } from '@pacha/shared/rebuild/blob-source';

// The check of packs as they arrive (git/pack-arrival.ts): a pack written piece by piece, as the
// rebuild's download writes it, told to the check after each piece; what it found is used by
// the staged repository's reader, after the same id check as every read.

const cleanups: (() => void)[] = [];
afterEach(() => {
  for (const c of cleanups.splice(0)) c();
});

function stagingRepo(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pacha-arrival-'));
  cleanups.push(() => fs.rmSync(dir, { recursive: true, force: true }));
  const repo = path.join(dir, 'repo');
  fs.mkdirSync(path.join(repo, 'objects', 'pack'), { recursive: true });
  return repo;
}

/** The index first, then the pack in `pieces` writes, each told to the check as it lands. */
async function arrive(repo: string, p: CraftedPack, check: PackArrivalCheck, pieces = 3): Promise<string> {
  const base = path.join(repo, 'objects', 'pack', `pack-${p.checksum}`);
  fs.writeFileSync(`${base}.idx`, p.idx);
  const arrived = check.pack(`${base}.pack`, `${base}.idx`, p.pack.length)!;
  const fd = fs.openSync(`${base}.pack`, 'w', 0o600);
  const step = Math.ceil(p.pack.length / pieces);
  for (let at = 0; at < p.pack.length; at += step) {
    fs.writeSync(fd, p.pack, at, Math.min(step, p.pack.length - at), at);
    arrived(Math.min(at + step, p.pack.length));
    await check.settled();
  }
  fs.closeSync(fd);
  return `${base}.pack`;
}

/** Every byte between the pack's header and its trailer flipped: nothing read from it checks any more. */
function spoil(packFile: string): void {
  const buf = fs.readFileSync(packFile);
  for (let i = 12; i < buf.length - 20; i++) buf[i] ^= 0xff;
  fs.writeFileSync(packFile, buf);
}

const blob = (s: string): CraftEntry => ({ type: 'blob', content: Buffer.from(s) });

describe('PackArrivalCheck', () => {
  it('checks each whole entry as its bytes arrive: those are not read again, their contents kept within the budget', async () => {
    const repo = stagingRepo();
    const large = Buffer.alloc(50_000, 'L');
    const entries = [blob('alpha\n'), blob('beta '.repeat(300)), { type: 'blob' as const, content: large }, blob('gamma\n')];
    const p = craftPack(entries);
    const ids = entries.map((e) => hashObject(e.type, e.content));
    // Objects over 10,000 bytes are hashed as a stream, not kept; room for the first two only.
    const check = new PackArrivalCheck({ from: 0, keep: 1510, keepEach: 10_000 });
    cleanups.push(() => check.close());
    const packFile = await arrive(repo, p, check);
    // The reads below would all fail now: what passes was found by the check as the pack arrived.
    spoil(packFile);
    const src = new BlobSource(repo, { budget: 1510, ahead: check });
    try {
      const why = await src.checkBlobs(entries.map((e, k) => ({ oid: ids[k], size: e.content.length })));
      expect(why).toEqual([null, null, null, null]);
      expect(src.tryRead(ids[0], 6)!.toString()).toBe('alpha\n');
      expect(src.tryRead(ids[1], 1500)!.toString()).toBe('beta '.repeat(300));
      // Checked, but not kept (over the budget): the restore's read goes to the (spoilt) pack.
      expect(() => src.tryRead(ids[3], 6)).toThrow(/corrupt|inflate|invalid/i);
      expect(src.objects.badPacks.size).toBe(1);
    } finally {
      src.close();
    }
  });

  it('an object over the size kept is checked whole or as a stream, as the budget allows, and never kept', async () => {
    for (const keep of [1 << 20, 1000]) {
      const repo = stagingRepo();
      const large = { type: 'blob' as const, content: Buffer.alloc(60_000, 'x') };
      const id = hashObject('blob', large.content);
      const check = new PackArrivalCheck({ from: 0, keep, keepEach: 10_000 });
      cleanups.push(() => check.close());
      spoil(await arrive(repo, craftPack([blob('small\n'), large]), check));
      const src = new BlobSource(repo, { ahead: check });
      try {
        expect(src.objects.takeVerified(id)).toEqual({ type: 'blob', size: 60_000, content: undefined });
      } finally {
        src.close();
      }
    }
  });

  it('a pack under CHECK_FROM bytes is left to the ordinary reads (no thread started for it)', () => {
    const check = new PackArrivalCheck({ keep: 1 << 20, keepEach: 1 << 20 });
    cleanups.push(() => check.close());
    expect(check.pack('/nonexistent/pack-x.pack', '/nonexistent/pack-x.idx', CHECK_FROM - 1)).toBeUndefined();
  });

  it('a pack entry whose content is not what its id says is refused as it arrives, the pack marked bad', async () => {
    const repo = stagingRepo();
    const claimed = hashObject('blob', Buffer.from('the real content\n'));
    const p = craftPack([blob('honest\n'), { type: 'blob', content: Buffer.from('a lie of the same length\n'), claim: claimed }]);
    const check = new PackArrivalCheck({ from: 0, keep: 1 << 20, keepEach: 1 << 20 });
    cleanups.push(() => check.close());
    const packFile = await arrive(repo, p, check, 2);
    const src = new BlobSource(repo, { ahead: check });
    try {
      expect(src.objects.takeVerified(claimed)).toBeUndefined();
      expect(src.objects.badPacks.get(packFile)).toBe(`object ${claimed} does not match its id`);
      expect(src.objects.takeVerified(hashObject('blob', Buffer.from('honest\n')))).toMatchObject({ type: 'blob', size: 7 });
      const [why] = await src.checkBlobs([{ oid: claimed, size: 17 }]);
      expect(why).toMatch(new RegExp(`its content \\(blob ${claimed}\\) cannot be read: object ${claimed} in .* is corrupt \\(content does not match its id\\)`));
    } finally {
      src.close();
    }
  });

  it('an entry that fails its CRC-32 or does not inflate is left to the ordinary read, which names what is wrong', async () => {
    const repo = stagingRepo();
    const entries = [blob('one\n'), blob('two\n')];
    const ids = entries.map((e) => hashObject(e.type, e.content));
    // The index's CRC of the first entry is wrong; the second entry's zlib stream is damaged.
    const p = craftPack(entries, { idx: (ix) => void (ix[0].crc ^= 1) });
    const cut = Buffer.from(p.pack);
    cut[cut.length - 21] ^= 0xff; // the last byte of the last zlib stream (its checksum)
    const check = new PackArrivalCheck({ from: 0, keep: 1 << 20, keepEach: 1 << 20 });
    cleanups.push(() => check.close());
    await arrive(repo, { ...p, pack: cut }, check);
    const src = new BlobSource(repo, { ahead: check });
    try {
      expect(src.objects.takeVerified(ids[0])).toBeUndefined();
      expect(src.objects.takeVerified(ids[1])).toBeUndefined();
      const why = await src.checkBlobs(entries.map((e, k) => ({ oid: ids[k], size: e.content.length })));
      // The first entry's content is right (only the index's CRC lies): read the ordinary way.
      expect(why[0]).toBeNull();
      expect(why[1]).toMatch(/cannot be read/);
    } finally {
      src.close();
    }
  });
});
