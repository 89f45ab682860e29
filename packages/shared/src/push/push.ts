import fs from 'node:fs';
import path from 'node:path';
import type { PachaConfig } from '../config.ts';
import { ConnectionError, NotFoundError, PachaError, errorMessage } from '../errors.ts';
import type { Logger } from '../log.ts';
import type { StatePaths } from '../state.ts';
import { masterHostPaths, type MasterHostPaths } from '../master-tree.ts';
import type { Transport } from '../transport/transport.ts';
import { openTransport } from '../transport/open.ts';
import { Repository } from '../git/repository.ts';
import type { PackIndexCache } from '../git/pack-index.ts';
import { commitsAfter, selectObjects } from './pack-select.ts';
import { buildPack, type PushPack, reusablePacks } from './pack-build.ts';
import { acquireRemoteLock } from './remote-lock.ts';
import { firstPacks } from '../snapshot/first-packs.ts';
import { DEFAULT_RETRY, withRetry, type RetryPolicy } from './retry.ts';
import { clearLeftovers, ensureRemoteRepo, randomTag, readRemoteHead, writeRemoteHeadTemp, TMP_PACK_PREFIX, TMP_IDX_PREFIX } from './remote-repo.ts';

// `pacha push`: send the snapshots the master lacks (docs/push-protocol.md).
//   connect → lock → negotiate (read the master's ref) → pack (one pack of the missing objects)
//   → upload under temporary names → rename into place, .idx last → replace the ref → unlock.
// Every step before the ref rename only adds files git does not look at yet, and the ref rename
// is atomic, so a crash at any point leaves the master at the old or the new snapshot.

export interface PushEnv {
  config: PachaConfig;
  state: StatePaths;
  log: Logger;
}

export interface PushResult {
  /** Commits the master did not have before this push. */
  commits: number;
  objects: number;
  bytes: number;
  /** The master's ref after the push. */
  remoteHead: string | null;
  /** Milliseconds per phase: connect, negotiate, pack, upload, ref. */
  phases: Record<string, number>;
}

export interface PushOptions {
  /** Use this connection (the caller keeps and closes it) instead of opening one from the config. */
  transport?: Transport;
  signal?: AbortSignal;
  retry?: Partial<RetryPolicy>;
  /** The local repository's pack indexes, kept by a caller that pushes again and again (the daemon). */
  indexes?: PackIndexCache;
  /**
   * The caller's previous push to this master completed (the daemon, the one writer of its
   * host's repository): the repository exists and the leftovers of interrupted pushes were
   * cleared then, so neither is looked for again. After a failed push the next one looks.
   */
  afterCompletedPush?: boolean;
}

class Phases {
  readonly ms: Record<string, number> = {};
  private t = performance.now();
  private name: string | undefined;
  start(name: string): void {
    this.stop();
    this.name = name;
    this.t = performance.now();
  }
  stop(): void {
    if (this.name !== undefined) this.ms[this.name] = Math.round((this.ms[this.name] ?? 0) + performance.now() - this.t);
    this.name = undefined;
  }
}

export async function pushSnapshots(env: PushEnv, opts: PushOptions = {}): Promise<PushResult> {
  const { config, state, log } = env;
  const host = config.hostname;
  const remote = masterHostPaths(config.hostsPath, host);
  const store = new Repository(state.repo, opts.indexes);
  const policy = { ...DEFAULT_RETRY, ...opts.retry };
  try {
    const localHead = fs.existsSync(state.repo) ? store.readRef('refs/heads/main') : null;
    if (localHead === null) {
      log.info('no local snapshots yet: nothing to push');
      return { commits: 0, objects: 0, bytes: 0, remoteHead: null, phases: {} };
    }
    return await withRetry(`push to ${config.host ?? 'the master'}`, policy, log, () => pushOnce(env, store, localHead, remote, opts), opts.signal);
  } finally {
    store.close();
  }
}

async function pushOnce(
  env: PushEnv,
  store: Repository,
  localHead: string,
  remote: MasterHostPaths,
  opts: PushOptions,
): Promise<PushResult> {
  const { config, state, log } = env;
  const phases = new Phases();
  phases.start('connect');
  const own = opts.transport === undefined;
  const t = opts.transport ?? (await openTransport(config, log));
  const tmpDir = path.join(state.dir, 'push-tmp');
  try {
    phases.start('negotiate');
    // The lock lives in the repository folder: create the folder only when it is missing
    // (first push), saving the round trips of mkdirp on every later push.
    let lock;
    /** The repository's folder was missing: made now, it holds neither leftovers nor a repository. */
    let fresh = false;
    try {
      lock = await acquireRemoteLock(t, remote.lock, config.hostname, log);
    } catch (e) {
      if (!(e instanceof NotFoundError)) throw e;
      await t.mkdirp(remote.repo);
      fresh = true;
      lock = await acquireRemoteLock(t, remote.lock, config.hostname, log);
    }
    try {
      // What a push after a failed or no push looks for goes alongside the ref's read, which it
      // does not change (the leftovers cleared first: their names are those the creation of the
      // repository writes under).
      const prepare = async () => {
        const leftovers = fresh ? 0 : await clearLeftovers(t, remote, log);
        if (leftovers > 0) log.info(`removed ${leftovers} temporary file(s) of an interrupted push`);
        if (await ensureRemoteRepo(t, remote, { fresh })) log.info(`created ${remote.repo} on the master`);
      };
      const [remoteHead] = await Promise.all([readRemoteHead(t, remote), opts.afterCompletedPush === true ? null : prepare()]);
      log.debug(`master ${t.description} has ${remote.repo} at ${remoteHead ?? '(no snapshot)'}; local head ${localHead}`);
      if (remoteHead === localHead) {
        phases.stop();
        return { commits: 0, objects: 0, bytes: 0, remoteHead, phases: phases.ms };
      }
      const commits = commitsAfter(store, localHead, remoteHead, `${remote.repo} (refs/heads/main)`);

      phases.start('pack');
      const packs = await packsToSend(env, store, commits, localHead, remoteHead, tmpDir);

      phases.start('upload');
      // The new ref goes up with the packs, under a temporary name (git ignores it; a push that
      // dies leaves it to clearLeftovers); only its rename, last, makes the snapshots visible.
      const ref = writeRemoteHeadTemp(t, remote, localHead);
      ref.catch(() => undefined); // awaited below; an upload failing first must not leave it unhandled
      const uploaded: UploadedPack[] = [];
      for (const pack of packs) uploaded.push(await uploadPack(t, `${remote.repo}/objects/pack`, pack, log));
      // One round of checks for all: the uploads' sizes, what is in place already, and the ref.
      const [checked, now] = await Promise.all([Promise.all(uploaded.map((u) => checkUploaded(t, u))), readRemoteHead(t, remote)]);
      for (const c of checked) await placePack(t, c);

      phases.start('ref');
      if (now !== remoteHead) {
        throw new PachaError(`the master's ref of ${config.hostname} moved during the push (${remoteHead} -> ${now}): another writer?`, {
          hint: 'run pacha push again; it negotiates afresh',
        });
      }
      await (await ref)();
      phases.stop();
      const objects = packs.reduce((a, p) => a + p.objects, 0);
      const bytes = packs.reduce((a, p) => a + p.bytes, 0);
      log.info(`pushed ${commits.length} snapshot(s), ${objects} objects, ${bytes} bytes to ${t.description}`);
      return { commits: commits.length, objects, bytes, remoteHead: localHead, phases: phases.ms };
    } finally {
      await lock.release().catch((e: unknown) => log.debug(`could not release ${remote.lock}: ${errorMessage(e)}`));
    }
  } finally {
    fs.rmSync(tmpDir, { recursive: true, force: true });
    if (own) await t.close().catch(() => undefined);
  }
}

/** A pack and its index uploaded under temporary names: [temporary, final, local file] each. */
type UploadedPack = [tmp: string, final: string, local: string][];

/** Upload a pack and its index under temporary names, together (git sees neither under them). */
async function uploadPack(t: Transport, dir: string, pack: PushPack, log: Logger): Promise<UploadedPack> {
  const name = `pack-${pack.checksum}`;
  const tag = randomTag();
  const files: UploadedPack = [
    [`${dir}/${TMP_PACK_PREFIX}${pack.checksum}-${tag}`, `${dir}/${name}.pack`, pack.packFile],
    [`${dir}/${TMP_IDX_PREFIX}${pack.checksum}-${tag}`, `${dir}/${name}.idx`, pack.idxFile],
  ];
  log.progress(`uploading ${pack.bytes} bytes to ${t.description}`);
  await Promise.all(files.map(([tmp, , local]) => t.upload(local, tmp)));
  return files;
}

/**
 * Each upload complete (its size), and whether a file of the same name is in place already: a
 * pack of the same name is the same content (named by its checksum), put there by an earlier,
 * interrupted push; it is kept (the master never overwrites objects). All at once.
 */
async function checkUploaded(t: Transport, files: UploadedPack): Promise<{ tmp: string; final: string; exists: boolean }[]> {
  return Promise.all(files.map(async ([tmp, final, local]) => {
    const [mine, existing] = await Promise.all([t.stat(tmp), t.stat(final)]);
    const want = fs.statSync(local).size;
    if (!mine || mine.size !== want) {
      throw new ConnectionError(`upload of ${tmp} is incomplete (${mine ? mine.size : 'no file'} of ${want} bytes): connection lost?`);
    }
    return { tmp, final, exists: existing !== null && existing.size === mine.size };
  }));
}

/** Rename into place: the pack, then its index (git reads a pack through its index). */
async function placePack(t: Transport, files: { tmp: string; final: string; exists: boolean }[]): Promise<void> {
  for (const f of files) {
    if (f.exists) await t.remove(f.tmp).catch(() => undefined);
    else await t.rename(f.tmp, f.final);
  }
}

/**
 * What goes up: a first snapshot's packs as it recorded them (a first push, without a walk), the
 * local packs when they hold exactly the objects the master lacks, or else one pack built of them.
 */
async function packsToSend(env: PushEnv, store: Repository, commits: string[], localHead: string, remoteHead: string | null, tmpDir: string): Promise<PushPack[]> {
  const { state, log } = env;
  const first = remoteHead === null ? firstPacks(state, store, localHead) : null;
  if (first !== null) {
    log.debug(`sending the first snapshot's ${first.length} pack(s) as they are`);
    return first;
  }
  const sel = selectObjects(store, commits);
  const reused = reusablePacks(store, sel.objects);
  if (reused !== null) {
    log.debug(`sending ${reused.length} local pack(s) as they are (${sel.objects.length} objects)`);
    return reused;
  }
  const built = await buildPack(store, sel.objects, tmpDir, (done, total) => log.progress(`packing ${done}/${total} objects`));
  log.debug(`pack of ${built.objects} objects, ${built.bytes} bytes (${built.copied} copied as stored, ${built.deflated} deflated)`);
  return [built];
}
