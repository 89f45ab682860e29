import fs from 'node:fs';
import path from 'node:path';
import { PachaError } from '../errors.ts';
import type { Logger } from '../log.ts';
import { hostPath } from '../paths.ts';
import { masterHostPaths } from '../master-tree.ts';
import type { Transport } from '../transport/transport.ts';
import type { PackArrivalCheck } from '../git/pack-arrival.ts';

// Step 1 of a rebuild: copy the host's folder from the master (repo/, pacha_pre/, pacha_post/)
// into a new private staging directory under the root dir's /tmp. Every file is streamed to
// disk; nothing on the master is changed.

export interface Staging {
  dir: string;
  repo: string;
  pre: string;
  post: string;
  files: number;
  bytes: number;
}

/** A new directory of mode 0700 under <root>/tmp, named for the host. */
export function createStagingDir(root: string, host: string): string {
  const tmp = hostPath('/tmp', root);
  if (!fs.existsSync(tmp)) {
    fs.mkdirSync(tmp, { recursive: true });
    fs.chmodSync(tmp, 0o1777);
    createdTmp.add(tmp);
  }
  const dir = fs.mkdtempSync(path.join(tmp, `pacha-rebuild-${host}-`));
  fs.chmodSync(dir, 0o700);
  return dir;
}

// A root dir without /tmp (a container volume, a test root) gets it back as it was.
const createdTmp = new Set<string>();

export function removeStagingDir(dir: string): void {
  fs.rmSync(dir, { recursive: true, force: true });
  const tmp = path.dirname(dir);
  if (createdTmp.has(tmp)) {
    try {
      fs.rmdirSync(tmp);
      createdTmp.delete(tmp);
    } catch {
      // not empty: something else uses it now
    }
  }
}

const SKIP = new Set(['pacha-push.lock']);

/** Where a name goes in the copy: refs before objects, a pack's index before the pack. */
function copyOrder(name: string): number {
  return name === 'objects' ? 2 : name.endsWith('.pack') ? 1 : 0;
}

async function copyTree(t: Transport, remote: string, local: string, counts: { files: number; bytes: number }, log: Logger, ahead?: PackArrivalCheck): Promise<void> {
  fs.mkdirSync(local, { recursive: true, mode: 0o700 });
  // Refs before objects: a push puts the objects in place before it moves the ref, so a ref
  // read first never names objects that the later listing of objects/ lacks. A pack's index
  // before the pack: the check ahead goes through the pack with it while the pack arrives.
  const entries = (await t.list(remote)).sort((a, b) => copyOrder(a.name) - copyOrder(b.name));
  const copied = new Set<string>();
  for (const e of entries) {
    if (SKIP.has(e.name) || e.name.includes('/') || e.name === '.' || e.name === '..') continue;
    const r = `${remote}/${e.name}`;
    const l = path.join(local, e.name);
    if (e.type === 'dir') await copyTree(t, r, l, counts, log, ahead);
    else if (e.type === 'file') {
      const idx = e.name.replace(/\.pack$/, '.idx');
      const arrived = ahead && idx !== e.name && copied.has(idx) ? ahead.pack(l, path.join(local, idx), e.size) : undefined;
      await t.download(r, l, arrived);
      copied.add(e.name);
      counts.files++;
      counts.bytes += e.size;
      log.progress(`fetched ${r} (${e.size} bytes)`);
    } else log.debug(`fetch: skipping ${r} (a ${e.type})`);
  }
}

/**
 * Copy the host's folder into stagingDir. `ahead`: told about each pack as it arrives (its
 * index is fetched first), to check it meanwhile (git/pack-arrival.ts).
 */
export async function fetchHostTree(t: Transport, hostsPath: string, host: string, stagingDir: string, log: Logger, ahead?: PackArrivalCheck): Promise<Staging> {
  const mp = masterHostPaths(hostsPath, host);
  const repoStat = await t.stat(mp.repo);
  if (!repoStat || repoStat.type !== 'dir') {
    throw new PachaError(`host "${host}" has no repository on the master (${t.description}: ${mp.repo} ${repoStat ? 'is not a directory' : 'does not exist'})`, {
      hint: 'check the host name (pacha-master hosts lists them) and pacha.hosts.path',
    });
  }
  const counts = { files: 0, bytes: 0 };
  const staging: Staging = {
    dir: stagingDir,
    repo: path.join(stagingDir, 'repo'),
    pre: path.join(stagingDir, 'pacha_pre'),
    post: path.join(stagingDir, 'pacha_post'),
    files: 0,
    bytes: 0,
  };
  await copyTree(t, mp.repo, staging.repo, counts, log, ahead);
  for (const [remote, local] of [
    [mp.pre, staging.pre],
    [mp.post, staging.post],
  ]) {
    const st = await t.stat(remote);
    if (st?.type === 'dir') await copyTree(t, remote, local, counts, log);
    else fs.mkdirSync(local, { recursive: true, mode: 0o700 });
  }
  staging.files = counts.files;
  staging.bytes = counts.bytes;
  return staging;
}
