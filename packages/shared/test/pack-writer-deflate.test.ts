import { execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';
import { afterEach, describe, expect, it } from 'vitest';
import { looksCompressed, PackWriter } from '../src/git/pack-writer.ts';
import { readPackEntries } from '../src/git/consolidate.ts';
import { deflateAsync, deflateEngine, deflateSync, inflateExact, inflateExactAsync } from '../src/git/deflate.ts';

// How the snapshot's pack writer spends its CPU: data that is compressed already is stored
// (zlib level 0) instead of deflated again, and files of 1 MiB or more are deflated on the
// thread pool while the next ones are read, a bounded number at a time. Either way the pack is
// one git accepts.

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});

function repo(): { dir: string; pack: string } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pacha-pw-'));
  dirs.push(dir);
  execFileSync('git', ['init', '-q', '--bare', dir]);
  return { dir, pack: path.join(dir, 'objects/pack') };
}

describe('inflateExact (a pack entry of known size)', () => {
  it('inflates to exactly the size given, ignores what follows the stream, and refuses any other size or bad data', () => {
    // Through libdeflate where the system has it (libdeflate0), else zlib: the same answers.
    const data = Buffer.from(Array.from({ length: 3000 }, (_, i) => `line ${i}\n`).join(''));
    for (const level of [0, 1, 9]) {
      const stream = deflateSync(data, level);
      expect(inflateExact(stream, data.length).equals(data)).toBe(true);
      expect(inflateExact(Buffer.concat([stream, Buffer.from('next entry')]), data.length).equals(data)).toBe(true);
      expect(inflateExact(zlib.deflateSync(data, { level }), data.length).equals(data)).toBe(true);
      expect(() => inflateExact(stream, data.length - 1)).toThrow();
      expect(() => inflateExact(stream, data.length + 1)).toThrow();
    }
    expect(inflateExact(deflateSync(Buffer.alloc(0), 1), 0)).toHaveLength(0);
    const bad = Buffer.from(deflateSync(data, 1));
    bad[20] ^= 0xff;
    bad[21] ^= 0xff;
    expect(() => inflateExact(bad, data.length)).toThrow();
    // A header that claims far more than the stream can hold is not believed (zlib then says so).
    expect(() => inflateExact(deflateSync(data, 9), 1024 * 1024 * 1024)).toThrow();
  });

  it('inflateExactAsync, on another thread, gives the same answers', async () => {
    const data = Buffer.from(Array.from({ length: 30000 }, (_, i) => `line ${i}\n`).join(''));
    const into = (n: number) => Buffer.alloc(n, 0xaa);
    for (const level of [0, 1, 9]) {
      const stream = deflateSync(data, level);
      const out = into(data.length);
      await inflateExactAsync(Buffer.concat([stream, Buffer.from('next entry')]), out);
      expect(out.equals(data)).toBe(true);
      await expect(inflateExactAsync(stream, into(data.length - 1))).rejects.toThrow();
      await expect(inflateExactAsync(stream, into(data.length + 1))).rejects.toThrow();
    }
    const bad = Buffer.from(deflateSync(data, 1));
    bad[20] ^= 0xff;
    bad[21] ^= 0xff;
    await expect(inflateExactAsync(bad, into(data.length))).rejects.toThrow();
    // More than the stream can hold: zlib's route (libdeflate is not asked), refused there.
    await expect(inflateExactAsync(deflateSync(data, 9), into(200 * 1024 * 1024))).rejects.toThrow(/inflates to 318890 bytes/);
    // Many at once, each into its own buffer.
    const outs = Array.from({ length: 16 }, () => into(data.length));
    await Promise.all(outs.map((o) => inflateExactAsync(deflateSync(data, 1), o)));
    for (const o of outs) expect(o.equals(data)).toBe(true);
  });
});

describe('pack writer deflate', () => {
  it('recognises compressed formats by their first bytes', () => {
    expect(looksCompressed(zlib.gzipSync('hello'))).toBe(true);
    expect(looksCompressed(Buffer.from('89504e470d0a1a0a', 'hex'))).toBe(true);
    expect(looksCompressed(Buffer.from('plain text\n'))).toBe(false);
    expect(looksCompressed(Buffer.alloc(0))).toBe(false);
  });

  it('stores compressed files, deflates the others on the thread pool, and git reads them all back', async () => {
    const r = repo();
    const src = path.join(r.dir, 'src');
    fs.mkdirSync(src);
    const files: { name: string; data: Buffer }[] = [];
    // Incompressible gzip data (small and streamed sizes), and text of many sizes around the
    // thread-pool threshold, more than the bytes allowed in flight at once.
    files.push({ name: 'real.gz', data: zlib.gzipSync(crypto.randomBytes(20_000)) });
    // Compressible bytes behind a gzip magic: stored all the same (deflate would shrink them).
    const magic = Buffer.from('1f8b', 'hex');
    files.push({ name: 'small.gz', data: Buffer.concat([magic, Buffer.alloc(20_000, 'a')]) });
    files.push({ name: 'big.gz', data: Buffer.concat([magic, Buffer.alloc(5 * 1024 * 1024, 'a')]) });
    for (let i = 0; i < 40; i++) files.push({ name: `t${i}.txt`, data: Buffer.from(`line ${i}\n`.repeat(100_000 + i * 10_000)) });
    for (const f of files) fs.writeFileSync(path.join(src, f.name), f.data);
    const w = PackWriter.create(r.pack);
    const ids = new Map<string, string>();
    for (const f of files) ids.set(f.name, (await w.addBlobFromFile(path.join(src, f.name))).oid);
    const done = (await w.finish())!;
    execFileSync('git', ['--git-dir', r.dir, 'verify-pack', done.idxFile]);
    for (const f of files) {
      expect(execFileSync('git', ['--git-dir', r.dir, 'cat-file', 'blob', ids.get(f.name)!], { maxBuffer: 64 * 1024 * 1024 }).equals(f.data)).toBe(true);
    }
    // The gzip files went in stored: their zlib streams are no smaller than their content.
    const entries = new Map(readPackEntries(done.idxFile)!.map((e) => [e.oid, e.data.length]));
    for (const name of ['small.gz', 'big.gz']) expect(entries.get(ids.get(name)!)).toBeGreaterThan(files.find((f) => f.name === name)!.data.length);
    expect(entries.get(ids.get('t39.txt')!)).toBeLessThan(files.find((f) => f.name === 't39.txt')!.data.length / 10);
  });

  // Where the system has no libdeflate0, zlib's route (the other tests) is the only one.
  it.skipIf(!deflateEngine().native)('deflates through libdeflate: views inside larger buffers, both threads, level 0 stored', async () => {
    const text = Buffer.from(Array.from({ length: 40_000 }, (_, i) => `key${i % 97} = value ${i * 7}\n`).join(''));
    // Views that do not start at their buffer's start: the pointer handed to C must be the view's.
    const holder = Buffer.concat([Buffer.alloc(1000, 'x'), text, Buffer.alloc(1000, 'y')]);
    const view = holder.subarray(1000, 1000 + text.length);
    for (const level of [1, 6, 9]) {
      const mine = deflateSync(view, level);
      expect(zlib.inflateSync(mine).equals(text)).toBe(true);
      // Not zlib's bytes: the stream came from libdeflate.
      expect(mine.equals(zlib.deflateSync(text, { level }))).toBe(false);
    }
    const big = await deflateAsync(view, 1);
    expect(zlib.inflateSync(big).equals(text)).toBe(true);
    // Level 0: stored blocks, a little larger than the data.
    const stored = deflateSync(view, 0);
    expect(zlib.inflateSync(stored).equals(text)).toBe(true);
    expect(stored.length).toBeGreaterThan(text.length);
    expect(zlib.inflateSync(deflateSync(Buffer.alloc(0), 1)).length).toBe(0);
  });

  it('with the deflate worker writes the same pack, byte for byte, as without it', async () => {
    const r = repo();
    // Objects of every route in one order: small ones (batched to the worker), one of 2 MiB
    // (the thread pool), compressed ones (stored), an entry copied as it is, a duplicate.
    const rnd = (n: number) => crypto.randomBytes(n).toString('hex');
    const objects: Buffer[] = [];
    for (let i = 0; i < 3000; i++) objects.push(Buffer.from(`${rnd(8)} = ${i}\n`.repeat(1 + (i % 300))));
    objects.splice(1000, 0, Buffer.from(`big ${rnd(4)}\n`.repeat(200_000)));
    objects.splice(2000, 0, zlib.gzipSync(rnd(5000)));
    objects.push(objects[5]);
    const raw = { data: zlib.deflateSync('copied as it is'), size: 15 };
    const rawOid = crypto.createHash('sha1').update('blob 15\0copied as it is').digest('hex');
    const write = async (worker: boolean) => {
      const w = PackWriter.create(path.join(r.dir, worker ? 'with' : 'without'), { worker });
      const ids = objects.map((o, i) => {
        if (i === 2500) w.addRawEntry({ oid: rawOid, type: 'blob', size: raw.size, data: raw.data });
        return w.addObject('blob', o);
      });
      expect(w.count).toBe(new Set(ids).size + 1);
      return { ids, done: (await w.finish())! };
    };
    const a = await write(true);
    const b = await write(false);
    expect(a.ids).toEqual(b.ids);
    expect(fs.readFileSync(a.done.packFile).equals(fs.readFileSync(b.done.packFile))).toBe(true);
    execFileSync('git', ['--git-dir', r.dir, 'verify-pack', a.done.idxFile]);
  });

  it('a durable pack larger than the background sync step is complete; an aborted one leaves nothing', async () => {
    const r = repo();
    // 40 MiB of incompressible objects: flushed in 4 MiB steps, synced in the background from 32 MiB on.
    const write = (w: PackWriter) => {
      const ids: string[] = [];
      for (let i = 0; i < 160; i++) ids.push(w.addObject('blob', crypto.randomBytes(256 * 1024)));
      return ids;
    };
    const w = PackWriter.create(r.pack);
    const ids = write(w);
    const done = (await w.finish())!;
    execFileSync('git', ['--git-dir', r.dir, 'verify-pack', done.idxFile]);
    expect(execFileSync('git', ['--git-dir', r.dir, 'cat-file', '-t', ids[159]], { encoding: 'utf8' }).trim()).toBe('blob');
    const before = fs.readdirSync(r.pack).sort();
    const gone = PackWriter.create(r.pack);
    write(gone);
    gone.abort();
    expect(fs.readdirSync(r.pack).sort()).toEqual(before);
  });

  it('drops the batches still with the worker when the pack is aborted', async () => {
    const r = repo();
    const w = PackWriter.create(r.pack, { worker: true });
    for (let i = 0; i < 2000; i++) w.addObject('blob', Buffer.from(`object ${i}\n`.repeat(300)));
    w.abort();
    expect(fs.readdirSync(r.pack)).toEqual([]);
    await expect(w.finish()).rejects.toThrow(/already finished or aborted/);
  });

  it('reads files one after another into one buffer without mixing them up', async () => {
    const r = repo();
    const src = path.join(r.dir, 'src');
    fs.mkdirSync(src);
    // Shrinking and growing sizes: a buffer reused from a longer file must not leak its tail.
    const sizes = [70_000, 5000, 1, 0, 300_000, 4096, 4095, 4097, 12];
    const files = sizes.map((n, i) => ({ name: `f${i}`, data: Buffer.from(`${i}`.repeat(n)).subarray(0, n) }));
    for (const f of files) fs.writeFileSync(path.join(src, f.name), f.data);
    const w = PackWriter.create(r.pack);
    const ids: string[] = [];
    for (const f of files) ids.push((await w.addBlobFromFile(path.join(src, f.name))).oid);
    await w.finish();
    files.forEach((f, i) => expect(execFileSync('git', ['--git-dir', r.dir, 'cat-file', 'blob', ids[i]]).equals(f.data)).toBe(true));
  });

  it('with the deflate worker reads files straight into its batches: duplicates, batch ends and a pack git reads back', async () => {
    const r = repo();
    const src = path.join(r.dir, 'src');
    fs.mkdirSync(src);
    // Some 3 MiB in files of 1 byte to 300 KB (batches of 1 MiB fill and go), every fifth a copy
    // of an earlier one (read into the batch, then found stored: the next file overwrites it).
    const files: { name: string; data: Buffer }[] = [];
    for (let i = 0; i < 120; i++) {
      const data = i % 5 === 4 ? files[i - 3].data : Buffer.from(`${i}:${crypto.randomBytes(8).toString('hex')}\n`.repeat(1 + ((i * 7919) % 12_000))).subarray(0, i === 7 ? 1 : undefined);
      files.push({ name: `f${i}`, data });
      fs.writeFileSync(path.join(src, `f${i}`), data);
    }
    const w = PackWriter.create(r.pack, { worker: true });
    const ids: string[] = [];
    for (const f of files) ids.push((await w.addBlobFromFile(path.join(src, f.name))).oid);
    const done = (await w.finish())!;
    expect(done.count).toBe(new Set(ids).size);
    execFileSync('git', ['--git-dir', r.dir, 'verify-pack', done.idxFile]);
    files.forEach((f, i) => expect(execFileSync('git', ['--git-dir', r.dir, 'cat-file', 'blob', ids[i]], { maxBuffer: 8 * 1024 * 1024 }).equals(f.data)).toBe(true));
  });

  it('files read on the workers (readFiles, addRead) make the pack addBlobFromFile makes, byte for byte; what they cannot read is left to it', async () => {
    const r = repo();
    const src = path.join(r.dir, 'src');
    fs.mkdirSync(src);
    // Text, a gzip file (stored), copies of earlier files and an empty one; then what the worker
    // must not read as a file: a missing path, a fifo, a symlink, a file over its size limit.
    const names: string[] = [];
    for (let i = 0; i < 60; i++) {
      const data = i === 5 ? zlib.gzipSync(crypto.randomBytes(5000)) : i % 7 === 6 ? fs.readFileSync(path.join(src, names[i - 4])) : Buffer.from(`${i}\n`.repeat(i * 97));
      names.push(`f${i}`);
      fs.writeFileSync(path.join(src, `f${i}`), data);
    }
    execFileSync('mkfifo', [path.join(src, 'fifo')]);
    fs.symlinkSync('f1', path.join(src, 'link'));
    fs.writeFileSync(path.join(src, 'large'), Buffer.alloc(4 * 1024 * 1024 + 1, 'x'));
    const odd = ['missing', 'fifo', 'link', 'large'];
    const paths = [...names, ...odd].map((n) => path.join(src, n));

    const direct = PackWriter.create(path.join(r.dir, 'direct'));
    for (const n of names) await direct.addBlobFromFile(path.join(src, n));
    const expected = fs.readFileSync((await direct.finish())!.packFile);

    const w = PackWriter.create(path.join(r.dir, 'workers'));
    w.startWorkers();
    expect(w.readsOnWorkers).toBe(true);
    const [a, b] = await Promise.all([w.readFiles(paths.slice(0, 30)), w.readFiles(paths.slice(30))]);
    const streams = [...a.streams, ...b.streams];
    const oids = [...a.oids, ...b.oids];
    const sizes = [...a.sizes, ...b.sizes];
    expect(streams.slice(names.length)).toEqual([null, null, null, null]);
    for (let i = 0; i < names.length; i++) {
      const data = fs.readFileSync(paths[i]);
      expect(streams[i]).not.toBeNull();
      expect(sizes[i]).toBe(data.length);
      expect(oids[i]).toBe(execFileSync('git', ['hash-object', paths[i]], { encoding: 'utf8' }).trim());
      await w.addRead(oids[i], sizes[i], streams[i]!);
    }
    const done = (await w.finish())!;
    expect(fs.readFileSync(done.packFile).equals(expected)).toBe(true);
    execFileSync('git', ['--git-dir', r.dir, 'verify-pack', done.idxFile]);
  });

  it('does not seal a pack cut short under the writer (its checksum is of what is on disk)', async () => {
    const r = repo();
    for (const worker of [false, true]) {
      const w = PackWriter.create(r.pack, { worker });
      for (let i = 0; i < 500; i++) w.addObject('blob', Buffer.from(`${worker} ${i}\n`.repeat(200)));
      await w.writeQueued();
      const tmp = fs.readdirSync(r.pack).find((f) => f.startsWith('tmp_pack_'))!;
      fs.truncateSync(path.join(r.pack, tmp), 1000);
      await expect(w.finish()).rejects.toThrow(/holds 1000 bytes where \d+ were written: not sealed/);
      w.abort();
      expect(fs.readdirSync(r.pack)).toEqual([]);
    }
    // Uncut, the same pack is sealed with the SHA-1 of its bytes, and git reads it.
    const w = PackWriter.create(r.pack, { worker: true });
    for (let i = 0; i < 500; i++) w.addObject('blob', Buffer.from(`kept ${i}\n`.repeat(200)));
    const done = (await w.finish())!;
    const bytes = fs.readFileSync(done.packFile);
    expect(bytes.subarray(-20).toString('hex')).toBe(crypto.createHash('sha1').update(bytes.subarray(0, -20)).digest('hex'));
    execFileSync('git', ['--git-dir', r.dir, 'verify-pack', done.idxFile]);
    execFileSync('git', ['--git-dir', r.dir, 'fsck', '--full', '--strict']);
  });

  it('never stores a file whose content is longer than its stat says (it is read again, then refused)', async () => {
    const r = repo();
    const w = PackWriter.create(r.pack);
    // A file of the kernel whose stat size is 0 while reading gives its text: what a file that
    // grows between the stat and the read looks like.
    await expect(w.addBlobFromFile('/proc/self/status')).rejects.toThrow(/changed while it was read \(3 tries\)/);
    w.abort();
  });
});
