import fs from 'node:fs';

// Durability: a file is fsynced before it is renamed into place, its directory after.

export function syncDir(dir: string): void {
  let fd: number;
  try {
    fd = fs.openSync(dir, 'r');
  } catch {
    return; // gone or unreadable: nothing to make durable here
  }
  try {
    fs.fsyncSync(fd);
  } catch {
    // some filesystems refuse fsync on directories; the rename is still atomic
  } finally {
    fs.closeSync(fd);
  }
}
