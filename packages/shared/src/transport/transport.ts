// A transport is how the agent reaches the master's host tree. Three implementations pass one
// shared test suite: a local folder, the embedded master (pacha-master serve) and OpenSSH's
// sftp-server. Push and rebuild are written against this interface only.
//
// Paths are POSIX paths on the master (e.g. /pacha/hosts/web1/repo/HEAD).

export interface RemoteStat {
  type: 'file' | 'dir' | 'symlink' | 'other';
  size: number;
  mtimeMs: number;
  mode: number;
}

export interface RemoteEntry extends RemoteStat {
  name: string;
}

export interface Transport {
  /** For messages: "sftp://bar_user@master.example.com:22", "file:///srv/pacha". */
  readonly description: string;
  /** null when the path does not exist. */
  stat(path: string): Promise<RemoteStat | null>;
  list(dir: string): Promise<RemoteEntry[]>;
  readFile(path: string): Promise<Buffer>;
  /** Create or truncate and write a whole (small) file. */
  writeFile(path: string, data: Uint8Array | string): Promise<void>;
  /** Create a file that must not exist yet (exclusive): false if it already exists. Used for locks. */
  createExclusive(path: string, data: Uint8Array | string): Promise<boolean>;
  /**
   * Stream a remote file to a local file; resolves when the local file is complete. `arrived(n)`:
   * the first n bytes of the local file are written (told as they are, growing, last the size).
   */
  download(remote: string, localFile: string, arrived?: (bytes: number) => void): Promise<void>;
  /** Stream a local file to the remote path. */
  upload(localFile: string, remote: string): Promise<void>;
  /** Atomic rename, replacing an existing target (posix-rename@openssh.com on OpenSSH). */
  rename(from: string, to: string): Promise<void>;
  mkdirp(path: string): Promise<void>;
  /** Remove a file (not a directory); no error when it is already gone. */
  remove(path: string): Promise<void>;
  close(): Promise<void>;
}
