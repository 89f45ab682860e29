import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { ExistsError, NotFoundError, PachaError, PermissionError, RemoteError } from '../errors.ts';
import type { RemoteEntry, RemoteStat, Transport } from './transport.ts';

// The master's host tree in a local folder (pacha.host = file://): for a master on the same
// machine, a mounted network filesystem, and the tests. Same semantics as the SFTP transports.

/** The transport boundary: a file system error as the transport error of its kind. */
function localError(e: unknown): PachaError {
  if (e instanceof PachaError) return e;
  const err = e instanceof Error ? e : new Error(String(e));
  const code = 'code' in err ? err.code : undefined;
  const o = { cause: err };
  if (code === 'ENOENT' || code === 'ENOTDIR') return new NotFoundError(err.message, o);
  if (code === 'EACCES' || code === 'EPERM') return new PermissionError(err.message, o);
  if (code === 'EEXIST') return new ExistsError(err.message, o);
  return new RemoteError(err.message, o);
}

async function mapped<T>(p: Promise<T>): Promise<T> {
  try {
    return await p;
  } catch (e) {
    throw localError(e);
  }
}

function toStat(st: fs.Stats): RemoteStat {
  return {
    type: st.isFile() ? 'file' : st.isDirectory() ? 'dir' : st.isSymbolicLink() ? 'symlink' : 'other',
    size: st.size,
    mtimeMs: st.mtimeMs,
    mode: st.mode & 0o7777,
  };
}

export class LocalTransport implements Transport {
  readonly description: string;
  constructor(label = 'file://') {
    this.description = label;
  }

  async stat(p: string): Promise<RemoteStat | null> {
    try {
      return toStat(await mapped(fsp.lstat(p)));
    } catch (e) {
      if (e instanceof NotFoundError) return null;
      throw e;
    }
  }

  async list(dir: string): Promise<RemoteEntry[]> {
    const names = await mapped(fsp.readdir(dir));
    const out: RemoteEntry[] = [];
    for (const name of names) {
      const st = await this.stat(path.join(dir, name));
      if (st) out.push({ name, ...st });
    }
    return out;
  }

  readFile(p: string): Promise<Buffer> {
    return mapped(fsp.readFile(p));
  }

  async writeFile(p: string, data: Uint8Array | string): Promise<void> {
    await mapped(fsp.writeFile(p, data));
  }

  async createExclusive(p: string, data: Uint8Array | string): Promise<boolean> {
    try {
      await mapped(fsp.writeFile(p, data, { flag: 'wx' }));
      return true;
    } catch (e) {
      if (e instanceof ExistsError) return false;
      throw e;
    }
  }

  async download(remote: string, localFile: string, arrived?: (bytes: number) => void): Promise<void> {
    const out = fs.createWriteStream(localFile, { mode: 0o600 });
    await mapped(pipeline(fs.createReadStream(remote), out));
    arrived?.(out.bytesWritten);
  }

  async upload(localFile: string, remote: string): Promise<void> {
    await mapped(pipeline(fs.createReadStream(localFile), fs.createWriteStream(remote, { mode: 0o644 })));
  }

  async rename(from: string, to: string): Promise<void> {
    await mapped(fsp.rename(from, to));
  }

  async mkdirp(p: string): Promise<void> {
    await mapped(fsp.mkdir(p, { recursive: true }));
  }

  async remove(p: string): Promise<void> {
    await mapped(fsp.rm(p, { force: true }));
  }

  async close(): Promise<void> {}
}
