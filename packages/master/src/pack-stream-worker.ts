import crypto from 'node:crypto';
import fs from 'node:fs';
import { parentPort } from 'node:worker_threads';
import { errorMessage } from '@pacha/shared/errors';
import { PackScanner } from '@pacha/shared/git/pack-scan';
import { objectRule } from './pack-check.ts';
import type { StreamDone, StreamMessage } from './pack-stream.ts';

// A thread of pack-stream.ts, one upload at a time: writes the bytes the master received into
// the master's own file, hashes them, and scans the entries (PackScanner) while the upload goes
// on. Kept for the next upload when done.

/** Acknowledged by the MiB: the master bounds what it handed over and is not yet written. */
const ACK_EVERY = 1024 * 1024;

interface Upload {
  copyFile: string;
  fd: number;
  hash: crypto.Hash;
  scanner: PackScanner;
  /** The last 20 bytes (a pack's trailer), held back from the hash until the end is known. */
  held: Buffer;
  size: number;
  failed: string | null;
  unacked: number;
}

let cur: Upload | null = null;

function data(u: Upload, bytes: Buffer): void {
  for (let done = 0; done < bytes.length; ) done += fs.writeSync(u.fd, bytes, done, bytes.length - done, u.size + done);
  u.size += bytes.length;
  if (bytes.length >= 20) {
    u.hash.update(u.held);
    u.hash.update(bytes.subarray(0, bytes.length - 20));
    u.held = Buffer.from(bytes.subarray(bytes.length - 20));
  } else {
    const all = Buffer.concat([u.held, bytes]);
    u.hash.update(all.subarray(0, Math.max(0, all.length - 20)));
    u.held = Buffer.from(all.subarray(Math.max(0, all.length - 20)));
  }
  u.scanner.push(bytes);
}

parentPort!.on('message', (m: StreamMessage) => {
  if (m.kind === 'start') {
    cur = { copyFile: m.copyFile, fd: -1, hash: crypto.createHash('sha1'), scanner: new PackScanner(objectRule), held: Buffer.alloc(0), size: 0, failed: null, unacked: 0 };
    try {
      cur.fd = fs.openSync(m.copyFile, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_NOFOLLOW, 0o444);
    } catch (e) {
      cur.failed = errorMessage(e);
    }
    return;
  }
  const u = cur;
  if (!u) return;
  if (m.kind === 'data') {
    if (u.failed === null) {
      try {
        data(u, Buffer.from(m.bytes.buffer, m.bytes.byteOffset, m.bytes.byteLength));
      } catch (e) {
        u.failed = errorMessage(e);
      }
    }
    u.unacked += m.bytes.byteLength;
    if (u.unacked >= ACK_EVERY) {
      parentPort!.postMessage({ kind: 'ack', n: u.unacked });
      u.unacked = 0;
    }
    return;
  }
  let reply: StreamDone;
  try {
    if (m.kind === 'abort' || u.failed !== null) throw new Error(u.failed ?? 'aborted');
    u.scanner.end();
    fs.fsyncSync(u.fd);
    reply = { ok: true, size: u.size, bodySha: u.hash.digest('hex'), tail: u.held.toString('hex'), scanned: u.scanner.result() };
  } catch (e) {
    reply = { ok: false, error: errorMessage(e) };
  }
  if (u.fd >= 0) fs.closeSync(u.fd);
  if (!reply.ok) fs.rmSync(u.copyFile, { force: true });
  cur = null;
  parentPort!.postMessage(reply);
});
