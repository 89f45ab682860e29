import zlib from 'node:zlib';
import { loadKoffi } from '../xattr/native.ts';

// The one deflate of objects into git's zlib streams. Through libdeflate (the system's
// libdeflate.so.0, Debian's libdeflate0, bound with koffi as the xattr calls are) when it is
// there: at level 1 it takes about half of zlib's time for the same size (measured in
// docs/benchmarks-development.md), and deflating is most of a first snapshot's CPU; level 0
// (stored: data that is compressed already) in a tenth of zlib's. Without it, Node's zlib, as
// before; also for level 0 where the library has no such level.
// The deflate worker (deflate-worker.ts) binds the same functions from LIBDEFLATE.
// Also the inflate of a pack entry whose size its header gives (pack-reader.ts readAt): libdeflate
// inflates it straight into a buffer of that size, where zlib's inflateSync makes a stream object
// and a 64 KiB output chunk for each object, and inflates more slowly.

/** The library and the C declarations of what pacha calls in it. */
export const LIBDEFLATE = {
  soname: 'libdeflate.so.0',
  alloc: 'void *libdeflate_alloc_compressor(int level)',
  free: 'void libdeflate_free_compressor(void *c)',
  compress: 'size_t libdeflate_zlib_compress(void *c, const void *input, size_t n, void *output, size_t avail)',
  bound: 'size_t libdeflate_zlib_compress_bound(void *c, size_t n)',
  allocDecompressor: 'void *libdeflate_alloc_decompressor(void)',
  decompress: 'int libdeflate_zlib_decompress(void *d, const void *input, size_t n, void *output, size_t avail, void *actual)',
} as const;

type Fn = ((...args: unknown[]) => unknown) & { async: (...args: unknown[]) => void };

interface Lib {
  alloc: Fn;
  free: Fn;
  compress: Fn;
  bound: Fn;
  allocDecompressor: Fn;
  decompress: Fn;
}

let lib: { ok: true; fns: Lib; koffiFile: string } | { ok: false; reason: string } | undefined;

function bind(): typeof lib & object {
  if (lib) return lib;
  const k = loadKoffi();
  if (!k.ok) return (lib = { ok: false, reason: k.reason });
  try {
    const so = k.koffi.load(LIBDEFLATE.soname);
    const f = (decl: string) => so.func(decl) as unknown as Fn;
    lib = {
      ok: true,
      fns: {
        alloc: f(LIBDEFLATE.alloc),
        free: f(LIBDEFLATE.free),
        compress: f(LIBDEFLATE.compress),
        bound: f(LIBDEFLATE.bound),
        allocDecompressor: f(LIBDEFLATE.allocDecompressor),
        decompress: f(LIBDEFLATE.decompress),
      },
      koffiFile: k.file,
    };
  } catch (e) {
    lib = { ok: false, reason: `${LIBDEFLATE.soname}: ${(e as Error).message}` };
  }
  return lib;
}

/** koffi.node's file when libdeflate can be used (for the deflate worker to load), else null. */
export function libdeflateKoffiFile(): string | null {
  const l = bind();
  return l.ok ? l.koffiFile : null;
}

/** Whether deflate goes through libdeflate, or why not (for tests and --debug). */
export function deflateEngine(): { native: true } | { native: false; reason: string } {
  const l = bind();
  return l.ok ? { native: true } : { native: false, reason: l.reason };
}

/** One compressor per level, for this thread's synchronous calls (a compressor is not shared); null: no such level. */
const compressors = new Map<number, unknown>();
let scratch = Buffer.allocUnsafeSlow(0);
const SCRATCH_MAX = 256 * 1024;

/** `data` as a zlib stream at `level` (0-9). */
export function deflateSync(data: Uint8Array, level: number): Buffer {
  const l = bind();
  if (!l.ok) return zlib.deflateSync(data, { level });
  const { fns } = l;
  let c = compressors.get(level);
  if (c === undefined) compressors.set(level, (c = fns.alloc(level)));
  if (c === null) return zlib.deflateSync(data, { level });
  const bound = Number(fns.bound(c, data.length));
  // A kept buffer for the many small objects; a rare larger one gets its own (a process that
  // stays, the daemon, keeps no more than SCRATCH_MAX).
  if (scratch.length < bound && bound <= SCRATCH_MAX) scratch = Buffer.allocUnsafeSlow(Math.max(bound, 64 * 1024));
  const out = scratch.length >= bound ? scratch : Buffer.allocUnsafeSlow(bound);
  const n = Number(fns.compress(c, data, data.length, out, out.length));
  if (n === 0) throw new Error(`libdeflate could not deflate ${data.length} bytes into ${out.length}`);
  // A copy of the exact size: the buffer is reused, and callers keep what they get.
  return Buffer.from(out.subarray(0, n));
}

/** The same on another thread (libdeflate on koffi's, zlib on libuv's pool); `data` must not change until it settles. */
export function deflateAsync(data: Uint8Array, level: number): Promise<Buffer> {
  const l = bind();
  const c = l.ok ? l.fns.alloc(level) : null;
  if (!l.ok || c === null) {
    // Output per thread-pool trip: zlib's default of 16 KiB makes hundreds of round trips.
    return new Promise((resolve, reject) => zlib.deflate(data, { level, chunkSize: 4 * 1024 * 1024 }, (err, out) => (err ? reject(err) : resolve(out))));
  }
  const { fns } = l;
  const out = Buffer.allocUnsafeSlow(Number(fns.bound(c, data.length)));
  return new Promise((resolve, reject) => {
    fns.compress.async(c, data, data.length, out, out.length, (err: unknown, n: unknown) => {
      fns.free(c);
      if (err) reject(err instanceof Error ? err : new Error(String(err)));
      else if (Number(n) === 0) reject(new Error(`libdeflate could not deflate ${data.length} bytes`));
      else resolve(out.subarray(0, Number(n)));
    });
  });
}

/** This thread's decompressor (null: libdeflate could not make one). */
let decompressor: unknown;
/** Objects up to this size are inflated into one buffer of their size (above it, zlib's chunks). */
const ONE_CHUNK_UP_TO = 64 * 1024 * 1024;
/** Deflate cannot shrink data more than about 1032 to 1: a header claiming more is not believed (no allocation). */
const MAX_RATIO = 1100;

/**
 * The zlib stream at the start of `stream` (what follows it is ignored), inflated: exactly `size`
 * bytes, in a buffer of its own. Throws when it does not inflate, or not to exactly that size.
 */
export function inflateExact(stream: Uint8Array, size: number): Buffer {
  if (nativeInflate(stream, size)) {
    const out = Buffer.allocUnsafeSlow(size);
    inflateInto(stream, out);
    return out;
  }
  // An output chunk one byte larger than the object: inflated straight into one buffer, not into
  // 16 KiB chunks joined by a copy. Not for a size a lying header could inflate into a huge
  // allocation.
  const chunkSize = size < ONE_CHUNK_UP_TO ? Math.max(size + 1, zlib.constants.Z_MIN_CHUNK) : undefined;
  let data = zlib.inflateSync(stream, { maxOutputLength: Math.max(size, 1), chunkSize });
  if (data.length !== size) throw new Error(`it inflates to ${data.length} bytes`);
  // zlib's sync output sits in a chunk of at least 64 KiB whatever chunkSize asks: a small
  // object gets memory of its own size, or a kept blob would hold the whole chunk.
  if (data.buffer.byteLength > data.length + 1) {
    const own = Buffer.allocUnsafeSlow(data.length);
    data.copy(own);
    data = own;
  }
  return data;
}

/** This thread's libdeflate inflate, when it takes an object of this size from a stream of this length. */
function nativeInflate(stream: Uint8Array, size: number): boolean {
  const l = bind();
  if (l.ok && decompressor === undefined) decompressor = l.fns.allocDecompressor();
  return l.ok && !!decompressor && size <= ONE_CHUNK_UP_TO && size <= stream.length * MAX_RATIO + 1024;
}

/**
 * inflateExact into `out` (exactly the size to inflate to, a part of a larger buffer perhaps):
 * the pack check's thread (pack-arrival-worker.ts) inflates a run of objects into one buffer.
 */
export function inflateInto(stream: Uint8Array, out: Buffer): void {
  const size = out.length;
  if (!nativeInflate(stream, size)) {
    inflateExact(stream, size).copy(out);
    return;
  }
  const l = bind() as { ok: true; fns: Lib };
  // libdeflate's result: 0 success, 1 bad data, 2 short output, 3 output larger than `size`.
  const r = Number(l.fns.decompress(decompressor, stream, stream.length, out, size, null));
  if (r !== 0) throw new Error(r === 2 ? `it inflates to fewer bytes than ${size}` : r === 3 ? `it inflates to more bytes than ${size}` : 'invalid zlib data');
}

/** Decompressors of the other threads' inflates, kept for the next one (one per call in flight). */
const idleDecompressors: unknown[] = [];

/**
 * inflateExact on another thread (libdeflate on koffi's, zlib on libuv's pool), into `out`
 * (exactly the size to inflate to): the calling thread goes on meanwhile. `stream` and `out`
 * must not be touched until it settles. Rejects as inflateExact throws.
 */
export function inflateExactAsync(stream: Uint8Array, out: Buffer): Promise<void> {
  const size = out.length;
  const l = bind();
  if (!l.ok || size > ONE_CHUNK_UP_TO || size > stream.length * MAX_RATIO + 1024) {
    return new Promise((resolve, reject) =>
      zlib.inflate(stream, { maxOutputLength: Math.max(size, 1), chunkSize: Math.max(Math.min(size + 1, ONE_CHUNK_UP_TO), zlib.constants.Z_MIN_CHUNK) }, (err, data) => {
        if (err) reject(err);
        else if (data.length !== size) reject(new Error(`it inflates to ${data.length} bytes`));
        else resolve(void data.copy(out));
      }),
    );
  }
  const { fns } = l;
  const d = idleDecompressors.pop() ?? fns.allocDecompressor();
  if (!d) return Promise.reject(new Error('libdeflate could not allocate a decompressor'));
  return new Promise((resolve, reject) => {
    fns.decompress.async(d, stream, stream.length, out, size, null, (err: unknown, r: unknown) => {
      idleDecompressors.push(d);
      if (err) reject(err instanceof Error ? err : new Error(String(err)));
      else if (Number(r) === 0) resolve();
      else reject(new Error(Number(r) === 2 ? `it inflates to fewer bytes than ${size}` : Number(r) === 3 ? `it inflates to more bytes than ${size}` : 'invalid zlib data'));
    });
  });
}
