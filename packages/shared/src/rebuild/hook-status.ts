import crypto from 'node:crypto';
import type { Logger } from '../log.ts';
import { comparePaths } from '../format/entry.ts';
import { masterHostPaths } from '../master-tree.ts';
import type { Transport } from '../transport/transport.ts';
import { hookStatus, readJournal, type HookPhase, type HookRun, type HookStatus } from './journal.ts';

// `pacha hooks [HOST]`: every hook on the master with the state of its last run on this
// machine. When the master cannot be reached, the hooks the journal knows are listed instead
// (marked source "journal"): what ran here is still worth seeing offline.

export interface HookListing {
  phase: HookPhase;
  name: string;
  sha256: string | null;
  status: HookStatus;
  last?: HookRun;
}

export interface HooksReport {
  host: string;
  source: 'master' | 'journal';
  /** Why the master was not used. */
  offlineReason?: string;
  hooks: HookListing[];
}

export async function listMasterHooks(t: Transport, hostsPath: string, host: string): Promise<{ phase: HookPhase; name: string; sha256: string }[]> {
  const mp = masterHostPaths(hostsPath, host);
  const out: { phase: HookPhase; name: string; sha256: string }[] = [];
  for (const [phase, dir] of [
    ['pre', mp.pre],
    ['post', mp.post],
  ] as const) {
    const st = await t.stat(dir);
    if (st?.type !== 'dir') continue;
    const files = (await t.list(dir)).filter((e) => e.type === 'file').sort((a, b) => comparePaths(a.name, b.name));
    for (const f of files) {
      const data = await t.readFile(`${dir}/${f.name}`);
      out.push({ phase, name: f.name, sha256: crypto.createHash('sha256').update(data).digest('hex') });
    }
  }
  return out;
}

export async function hooksReport(opts: { host: string; journalDir: string; connect: () => Promise<Transport>; hostsPath: string; log: Logger }): Promise<HooksReport> {
  const journal = readJournal(opts.journalDir, opts.host);
  let t: Transport | undefined;
  try {
    t = await opts.connect();
    const found = await listMasterHooks(t, opts.hostsPath, opts.host);
    return {
      host: opts.host,
      source: 'master',
      hooks: found.map((h) => ({ ...h, ...hookStatus(journal, h.phase, h.name, h.sha256) })),
    };
  } catch (e) {
    const reason = (e as Error).message;
    opts.log.warn(`cannot list the hooks on the master (${reason}): showing the hooks this machine's journal knows`);
    const seen = new Map<string, HookListing>();
    for (const r of journal.runs) seen.set(`${r.phase}\0${r.name}`, { phase: r.phase, name: r.name, sha256: r.sha256, status: r.ok ? 'applied' : 'failed', last: r });
    const hooks = [...seen.values()].sort((a, b) => (a.phase === b.phase ? comparePaths(a.name, b.name) : a.phase === 'pre' ? -1 : 1));
    return { host: opts.host, source: 'journal', offlineReason: reason, hooks };
  } finally {
    await t?.close().catch(() => undefined);
  }
}
