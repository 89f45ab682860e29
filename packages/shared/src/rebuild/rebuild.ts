import fs from 'node:fs';
import path from 'node:path';
import { loadAccounts } from '../accounts.ts';
import type { PachaConfig } from '../config.ts';
import { checkHostName } from '../master-tree.ts';
import { PachaError, UsageError, errorMessage } from '../errors.ts';
import { acquireLock, type PidLock } from '../lock.ts';
import type { Logger } from '../log.ts';
import { ensureStateDir, writeFileAtomic, type StatePaths } from '../state.ts';
import { readWatchList } from '../watchlist.ts';
import { toHostPath } from '../paths.ts';
import { openTransport, isLocalMaster } from '../transport/open.ts';
import type { Transport } from '../transport/transport.ts';
import { postCallback } from '../callback.ts';
import { escapeTerminal } from '../terminal.ts';
import { createStagingDir, fetchHostTree, removeStagingDir, type Staging } from './fetch.ts';
import { DEFAULT_HOOK_TIMEOUT_SECONDS, listHooks, runHooks } from './hooks.ts';
import { BlobSource, IN_MEMORY_LIMIT, checkedBudget } from './blob-source.ts';
import { PackArrivalCheck } from '../git/pack-arrival.ts';
import { ownerResolver, type OwnerResolver } from './owners.ts';
import { defaultPolicy, XattrRestorer, type SelinuxMode } from '../xattr/xattr.ts';
import { describePlan, planRestore, type Plan } from './plan.ts';
import { readStagedSnapshot, resolveHead } from './read.ts';
import { resolveAt } from '../git/history.ts';
import { restorePlan, type RestoreCounts, type RestoreResult } from './restore.ts';
import { checkTargetAncestors, validateSnapshot } from './validate.ts';
import { verifyRestored } from './verify.ts';
import { HostSteps } from '../host/rebuild-steps.ts';

// The rebuild pipeline (DESIGN.md "Rebuild pipeline"): connect, fetch into a private staging
// dir, read the snapshot, validate, show the plan and confirm, pre hooks, restore, owners and
// modes, directory metadata, post hooks, summary. Each step lives in its own module; this one
// only orders them, times them and records the outcome.

export interface RebuildEnv {
  config: PachaConfig;
  state: StatePaths;
  log: Logger;
}

export interface RebuildOptions {
  host: string;
  /** Skip the confirmation. */
  yes?: boolean;
  dryRun?: boolean;
  at?: string;
  only?: string;
  rerunHooks?: boolean;
  /** --delete: remove (keeping a copy) what the host has under the roots and the snapshot lacks. */
  deleteExtra?: boolean;
  verify?: boolean;
  hookTimeoutSeconds?: number;
  /** Asks the operator; resolves to go on. Required unless yes or dryRun. */
  confirm?: (question: string) => Promise<void>;
  /** Plan and dry-run lines (stdout). */
  out?: (line: string) => void;
  transport?: Transport;
  /**
   * A connection to the master the caller started opening ahead of the rebuild (so that the
   * handshake overlaps its start-up): used instead of opening one, and closed like one the
   * rebuild opened, whatever the outcome.
   */
  connecting?: Promise<Transport>;
  /** Extra environment for the hooks. */
  hookEnv?: NodeJS.ProcessEnv;
  /** Told once what a rebuild that ran (not a dry run) did, ok or failed: the agent records it. */
  onOutcome?: (r: RebuildRecord) => void;
  /** Skip the built-in steps (host/rebuild-steps.ts). */
  noAccounts?: boolean;
  noPackages?: boolean;
  /** security.selinux: restored where the target has SELinux (auto, the default), always, or never. */
  selinux?: SelinuxMode;
}

/** What a rebuild did, for the operator's status files (the agent writes them). */
export interface RebuildRecord {
  time: string;
  host: string;
  /** null when it failed before a snapshot was chosen. */
  commit: string | null;
  outcome: 'ok' | 'failed';
  phases: Record<string, number>;
  counts: RebuildCounts;
  seconds: number;
  error?: string;
}

export type RebuildCounts = RestoreCounts;

export interface RebuildResult {
  host: string;
  commit: string;
  snapshotTime: string;
  outcome: 'ok' | 'dry-run';
  counts: RebuildCounts;
  /** Milliseconds per phase: fetch, validate, plan, hooks (pre + post), restore, metadata, verify. */
  phases: Record<string, number>;
  seconds: number;
  /** --dry-run: every difference. */
  differences?: string[];
  hooks: { ran: string[]; skipped: string[] };
  warnings: string[];
  seededLocalRepo: boolean;
  keptUnder?: string;
  /** The built-in steps: "group x", "user y" created; apt specs ("hello=2.10-3") installed. */
  accountsCreated?: string[];
  packagesInstalled?: string[];
}

function connectionLines(config: PachaConfig, t: Transport): string[] {
  if (isLocalMaster(config)) return [`Master folder: ${config.hostsPath} (${t.description})`];
  return [`SSH connection: ${config.sshUser}@${config.host}`, `SSH port: ${config.sshPort}`];
}

export async function rebuildHost(env: RebuildEnv, opts: RebuildOptions): Promise<RebuildResult> {
  const { config, state, log } = env;
  const out = opts.out ?? ((l: string) => process.stdout.write(l + '\n'));
  const host = opts.host;
  // The early connection, when the rebuild ends without having taken it.
  const dropEarly = () => void opts.connecting?.then((t) => t.close(), () => undefined).catch(() => undefined);
  const hookTimeout = opts.hookTimeoutSeconds ?? DEFAULT_HOOK_TIMEOUT_SECONDS;
  try {
    checkHostName(host);
    if (!opts.yes && !opts.dryRun && !opts.confirm) {
      throw new UsageError('no terminal to confirm the rebuild on: pass --yes to rebuild without asking (or --dry-run to only see the plan)');
    }
    if (!(hookTimeout > 0)) throw new UsageError(`--hook-timeout ${hookTimeout}: accepted: a number of seconds above 0`);
  } catch (e) {
    dropEarly();
    throw e;
  }
  const started = Date.now();
  const phases: Record<string, number> = {};
  const time = async <T>(name: string, f: () => Promise<T>): Promise<T> => {
    const t = Date.now();
    try {
      return await f();
    } finally {
      phases[name] = (phases[name] ?? 0) + (Date.now() - t);
    }
  };

  let lock: PidLock | undefined;
  let staging: Staging | undefined;
  let stagingDir: string | undefined;
  let transport: Transport | undefined = opts.transport;
  let commit = '';
  let blobs: BlobSource | undefined;
  let ahead: PackArrivalCheck | undefined;
  const budget = checkedBudget();
  let counts: RebuildCounts = { created: 0, replaced: 0, unchanged: 0, deleted: 0, metadataFixed: 0, bytes: 0 };
  try {
    if (!opts.dryRun) {
      ensureStateDir(config.stateDir);
      lock = acquireLock(state.lock, 'rebuild', log);
    }
    // 1. connect and fetch
    // The packs are checked on another thread as they arrive, and what it finds is not read again.
    ahead = new PackArrivalCheck({ keep: budget, keepEach: IN_MEMORY_LIMIT });
    staging = await time('fetch', async () => {
      transport ??= await (opts.connecting ?? openTransport(config, log));
      for (const l of connectionLines(config, transport)) out(l);
      out(`Host to rebuild: ${host}`);
      stagingDir = createStagingDir(config.root, host);
      log.debug(`staging in ${stagingDir}`);
      return fetchHostTree(transport, config.hostsPath, host, stagingDir, log, ahead);
    });
    if (!opts.transport) await transport!.close().catch(() => undefined);
    log.info(`fetched ${staging.files} files (${staging.bytes} bytes) from the master`);

    // 2. read and validate
    const { snap, valid } = await time('validate', async () => {
      blobs = new BlobSource(staging!.repo, { budget, ahead });
      commit = resolveAt(blobs.objects, resolveHead(staging!.repo, blobs.objects), opts.at);
      const snap = readStagedSnapshot(staging!.repo, blobs.objects, commit);
      // pacha's own state (repository, lock, journal) is never restored over itself.
      const exclude = [toHostPath(config.stateDir, config.root), toHostPath(staging!.dir, config.root)].filter((x): x is string => x !== null);
      const valid = await validateSnapshot(snap, { root: config.root, only: opts.only, blobs, exclude });
      return { snap, valid };
    });
    const steps = new HostSteps(blobs!.objects, commit, { root: config.root, roots: snap.roots, entries: snap.entries }, { noAccounts: opts.noAccounts, noPackages: opts.noPackages });
    const preHooks = listHooks(staging.pre, 'pre');
    const postHooks = listHooks(staging.post, 'post');

    // 3. plan and confirm
    // Extended attributes: ACL ids mapped by name like owners; format 1 recorded none.
    const xattrPolicy = defaultPolicy(opts.selinux ?? 'auto', config.root);
    const xattrsFor = (r: OwnerResolver) => new XattrRestorer(r, xattrPolicy, snap.version >= 2);
    const makePlan = () =>
      time('plan', () => {
        const resolver = ownerResolver(loadAccounts(config.root), config.root);
        return planRestore(valid, { root: config.root, resolver, xattrs: xattrsFor(resolver), deleteExtra: opts.deleteExtra === true });
      });
    let plan: Plan = await makePlan();
    out(`Snapshot: ${commit} (${new Date(snap.timeMs).toISOString()})${opts.at ? ` chosen by --at ${opts.at}` : ' (newest)'}`);
    // Names below come from the repository and the master: escaped for the terminal.
    out(`Restoring: ${valid.scope.map((r) => escapeTerminal(r)).join(', ')}`);
    out(`Files to create: ${plan.counts.create}`);
    out(`Files to replace: ${plan.counts.replace} (kept under ${state.replacedDir}/<time>/ first)`);
    out(`Files to leave: ${plan.counts.unchanged}${plan.counts.metadata ? ` (${plan.counts.metadata} of them with owner, mode or mtime fixed)` : ''}`);
    if (opts.deleteExtra) out(`Files to delete: ${plan.counts.delete} (kept under ${state.replacedDir}/<time>/ first)`);
    out(`Hooks: ${preHooks.length} pacha_pre, ${postHooks.length} pacha_post`);
    const stepPlan = steps.planLines(opts.dryRun === true);
    for (const l of stepPlan.lines) out(l);
    for (const w of stepPlan.warnings) log.warn(w);

    if (opts.dryRun) {
      const differences = describePlan(plan);
      out(differences.length ? `Differences (${differences.length}):` : 'No differences: the host already matches the snapshot.');
      for (const d of differences) out(`  ${escapeTerminal(d)}`);
      for (const h of preHooks) out(`  would run pacha_pre hook ${escapeTerminal(h.name)}`);
      for (const h of postHooks) out(`  would run pacha_post hook ${escapeTerminal(h.name)}`);
      removeStagingDir(staging.dir);
      return {
        host,
        commit,
        snapshotTime: new Date(snap.timeMs).toISOString(),
        outcome: 'dry-run',
        counts: { created: plan.counts.create, replaced: plan.counts.replace, unchanged: plan.counts.unchanged, deleted: plan.counts.delete, metadataFixed: plan.counts.metadata, bytes: plan.bytes },
        phases,
        seconds: (Date.now() - started) / 1000,
        differences,
        hooks: { ran: [], skipped: [] },
        warnings: [],
        seededLocalRepo: false,
      };
    }
    if (!opts.yes) await opts.confirm!('Hit Enter to confirm or Ctrl-C to cancel');

    // 4. pre hooks
    const hookOpts = {
      host,
      commit,
      stagingDir: staging.dir,
      root: config.root,
      timeoutSeconds: hookTimeout,
      journalDir: state.hookJournalDir,
      rerun: opts.rerunHooks === true,
      log,
      env: opts.hookEnv,
    };
    const pre = await time('hooks', () => runHooks(preHooks, hookOpts));
    // 4b. the built-in steps: accounts, then packages (what is still missing after the hooks).
    const built = await time('steps', () => steps.run({ journalDir: state.hookJournalDir, host, commit, log }));

    // 5-6. restore with owners as the host now knows them. The hooks may have installed
    // packages (new files, maybe symlinks): check and plan again against what is there now.
    const resolver = ownerResolver(loadAccounts(config.root), config.root);
    if (pre.ran.length > 0 || built.changed) {
      checkTargetAncestors(valid.items, config.root);
      plan = await makePlan();
    }
    const keepDir = path.join(state.replacedDir, new Date().toISOString());
    const xattrs = xattrsFor(resolver);
    const res: RestoreResult = await restorePlan(plan, { root: config.root, keepDir, resolver, log, blobs: blobs!, xattrs });
    phases.restore = res.phases.restore;
    phases.metadata = res.phases.metadata;
    phases.sync = res.phases.sync;
    const xattrWarnings = xattrs.messages();
    for (const w of xattrWarnings) log.warn(escapeTerminal(w));
    const warnings = [...built.warnings, ...resolver.reportMissing(log), ...xattrWarnings];
    counts = { created: res.created, replaced: res.replaced, unchanged: res.unchanged, deleted: res.deleted, metadataFixed: res.metadataFixed, bytes: res.bytes };
    if (res.refused.length) {
      // The rest is in place; the post hooks (which expect a whole host) do not run.
      const lines = res.refused.map((r) => `  ${escapeTerminal(r.hostPath)}: ${r.reason}${r.skipped ? ` (${r.skipped} path(s) below it left alone too)` : ''}`);
      throw new PachaError(`${res.refused.length} path(s) changed on this host while the rebuild ran and were refused, not followed; everything else was restored:\n${lines.join('\n')}`, {
        hint: 'see who changes them, then run the same rebuild again: what is already right is left alone, hooks that succeeded are skipped',
      });
    }

    if (opts.verify) {
      const problems = await time('verify', () => verifyRestored(valid.items, config.root, resolver, xattrs));
      if (problems.length) {
        throw new PachaError(`--verify: ${problems.length} restored path(s) differ from the snapshot:\n${problems.slice(0, 20).map((p) => `  ${p}`).join('\n')}`);
      }
      log.info(`verified ${valid.items.length} paths against the snapshot`);
    }

    // 7. post hooks
    const post = await time('hooks', () => runHooks(postHooks, hookOpts));

    // The rebuilt host continues the master's history: its next snapshot must descend from it.
    // It also keeps watching what the lost host watched: without a watch list its next
    // snapshot would record every root as deleted.
    let seeded = false;
    if (host === config.hostname) {
      if (!fs.existsSync(state.repo)) {
        // The staged copy is no longer needed: moved, not copied, unless the state dir is on
        // another filesystem (a whole pack written again for nothing).
        try {
          fs.renameSync(staging.repo, state.repo);
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code !== 'EXDEV') throw e;
          fs.cpSync(staging.repo, state.repo, { recursive: true });
        }
        seeded = true;
        log.info(`seeded the local repository ${state.repo} from the master's history`);
      }
      const toWatch = snap.roots.filter((r) => !config.watch.includes(r));
      if (readWatchList(state).length === 0 && toWatch.length > 0) {
        writeFileAtomic(state.watchList, toWatch.map((r) => r + '\n').join(''), 0o644);
        log.info(`watching again what ${host} watched: ${snap.roots.join(', ')}`);
      }
    }

    const result: RebuildResult = {
      host,
      commit,
      snapshotTime: new Date(snap.timeMs).toISOString(),
      outcome: 'ok',
      counts,
      phases,
      seconds: (Date.now() - started) / 1000,
      hooks: { ran: [...pre.ran, ...post.ran], skipped: [...pre.skipped, ...post.skipped] },
      warnings,
      seededLocalRepo: seeded,
      keptUnder: res.kept.length ? keepDir : undefined,
      accountsCreated: built.accounts?.created ?? [],
      packagesInstalled: built.packages?.installed ?? [],
    };
    opts.onOutcome?.({ time: new Date().toISOString(), host, commit, outcome: 'ok', phases, counts, seconds: result.seconds });
    removeStagingDir(staging.dir);
    lock?.release();
    lock = undefined;
    await postCallback(config.callbackUrl, { host, commit, outcome: 'ok', counts, duration: result.seconds, error: null }, log, { what: 'rebuild' });
    return result;
  } catch (err) {
    const seconds = (Date.now() - started) / 1000;
    if (!opts.dryRun) opts.onOutcome?.({ time: new Date().toISOString(), host, commit: commit || null, outcome: 'failed', phases, counts, seconds, error: errorMessage(err) });
    if (stagingDir) {
      if (opts.dryRun) removeStagingDir(stagingDir);
      else log.info(`the staging directory is kept for inspection: ${stagingDir}`);
    }
    lock?.release();
    lock = undefined;
    if (!opts.dryRun) await postCallback(config.callbackUrl, { host, commit: commit || null, outcome: 'failed', counts, duration: seconds, error: errorMessage(err) }, log, { what: 'rebuild' });
    throw err;
  } finally {
    blobs?.close();
    ahead?.close();
    lock?.release();
    if (transport && !opts.transport) await transport.close().catch(() => undefined);
    else if (!transport) dropEarly();
  }
}
