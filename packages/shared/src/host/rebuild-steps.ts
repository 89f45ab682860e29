import crypto from 'node:crypto';
import { loadAccountEntries } from '../accounts.ts';
import type { Repository } from '../git/repository.ts';
import type { Logger } from '../log.ts';
import type { MetadataEntry } from '../format/entry.ts';
import { appendRun } from '../rebuild/journal.ts';
import { escapeTerminal } from '../terminal.ts';
import { accountsPlanEmpty, describeAccountsPlan, planAccounts, runAccountsStep, type AccountsPlan, type AccountsStepResult } from './account-step.ts';
import { readHostFiles, type HostFiles } from './history.ts';
import { describePackagesPlan, packagesPlanEmpty, planPackages, runPackagesStep, type PackagesPlan, type PackagesStepResult } from './package-step.ts';
import { readPackageManifest } from './packages.ts';

// The rebuild's two built-in steps, between the pre hooks and the restore of the files:
// accounts (account-step.ts), then packages (package-step.ts). Planned before the prompt
// against the host as it is, planned again and run after the pre hooks (which may have done
// part of it). Every run is journalled in the hook journal (phase "step", names "accounts"
// and "packages"): each step does only what is still missing, so a second run of the same
// rebuild, or one after a failure, does nothing twice.

const NOT_ROOT = 'groupadd and useradd need root, and pacha does not run as root';

/** Only root may run groupadd and useradd (even with --prefix). */
function canCreateAccounts(): boolean {
  return process.getuid?.() === 0;
}

export interface HostStepOptions {
  noAccounts?: boolean;
  noPackages?: boolean;
}

export interface HostStepsContext {
  root: string;
  /** The snapshot's roots (the plan warns when /etc/apt is not among them). */
  roots: string[];
  entries: MetadataEntry[];
}

export interface HostStepsOutcome {
  accounts: AccountsStepResult | null;
  packages: PackagesStepResult | null;
  /** Something was created or installed: the files' plan must be made again. */
  changed: boolean;
  warnings: string[];
}

export class HostSteps {
  readonly recorded: HostFiles;
  private readonly ctx: HostStepsContext;
  private readonly opts: HostStepOptions;

  constructor(objects: Repository, commit: string, ctx: HostStepsContext, opts: HostStepOptions) {
    this.recorded = readHostFiles(objects, commit);
    this.ctx = ctx;
    this.opts = opts;
  }

  accountsPlan(): AccountsPlan | null {
    if (this.opts.noAccounts || !this.recorded.accounts) return null;
    return planAccounts(this.recorded.accounts, loadAccountEntries(this.ctx.root));
  }

  packagesPlan(): PackagesPlan | null {
    if (this.opts.noPackages || !this.recorded.packages) return null;
    return planPackages(this.recorded.packages, readPackageManifest(this.ctx.root).manifest, { root: this.ctx.root, roots: this.ctx.roots });
  }

  /** The plan's lines, shown before the prompt (and by --dry-run, with every action). */
  planLines(detail: boolean): { lines: string[]; warnings: string[] } {
    const lines: string[] = [];
    const warnings: string[] = [];
    const a = this.accountsPlan();
    if (this.opts.noAccounts) lines.push('Accounts to create: skipped (--no-accounts)');
    else if (!this.recorded.accounts) lines.push('Accounts to create: none (the snapshot records no accounts)');
    else {
      const d = describeAccountsPlan(a!);
      lines.push(`Accounts to create: ${d.length === 0 ? 'none' : d.length}${d.length > 0 && !canCreateAccounts() ? ` (not created: ${NOT_ROOT})` : ''}`);
      if (detail || d.length <= 10) lines.push(...d.map((l) => `  ${l}`));
    }
    const p = this.packagesPlan();
    if (this.opts.noPackages) lines.push('Packages to install: skipped (--no-packages)');
    else if (!this.recorded.packages) lines.push('Packages to install: none (the snapshot records no packages)');
    else {
      const d = describePackagesPlan(p!);
      lines.push(`Packages to install: ${p!.missing.length === 0 ? 'none' : p!.missing.length}${p!.cannotInstall && !packagesPlanEmpty(p!) ? ` (not installed: ${p!.cannotInstall})` : ''}`);
      if (detail || d.length <= 10) lines.push(...d.map((l) => `  ${l}`));
      warnings.push(...p!.notes);
    }
    // Names come from the repository: escaped before they reach the terminal.
    return { lines: lines.map((l) => escapeTerminal(l)), warnings };
  }

  /** Run both steps (after the pre hooks), each journalled. */
  async run(j: { journalDir: string; host: string; commit: string; log: Logger }): Promise<HostStepsOutcome> {
    const outcome: HostStepsOutcome = { accounts: null, packages: null, changed: false, warnings: [] };
    const owned = (kind: 'user' | 'group', name: string) => this.ctx.entries.filter((e) => (kind === 'user' ? e.user : e.group) === name).map((e) => '/' + e.path);
    const a = this.accountsPlan();
    if (a) {
      outcome.accounts = await journalled(j, 'accounts', this.recorded.accountsOid ?? '', async () => {
        if (accountsPlanEmpty(a)) {
          j.log.info('accounts: every recorded user and group exists');
          return { created: [], warnings: [], output: 'nothing to create\n' };
        }
        if (!canCreateAccounts()) {
          const w = `accounts not created: ${NOT_ROOT}: ${describeAccountsPlan(a).join(', ')}`;
          j.log.warn(w);
          return { created: [], warnings: [w], output: w + '\n' };
        }
        return runAccountsStep(a, this.recorded.accounts!, { root: this.ctx.root, log: j.log, ownedBy: owned });
      }, (r) => `${r.created.length ? `created ${r.created.join(', ')}` : 'nothing to create'}\n${r.output}`);
      outcome.changed ||= outcome.accounts.created.length > 0;
      outcome.warnings.push(...outcome.accounts.warnings);
    }
    const p = this.packagesPlan();
    if (p) {
      outcome.packages = await journalled(j, 'packages', this.recorded.packagesOid ?? '', async () => {
        if (packagesPlanEmpty(p)) {
          j.log.info('packages: every recorded manual package is installed');
          return { installed: [], marked: [], warnings: [], output: 'nothing to install\n' };
        }
        return runPackagesStep(p, { log: j.log });
      }, (r) => `${r.installed.length ? `installed ${r.installed.join(' ')}` : 'nothing installed'}${r.marked.length ? `; marked ${r.marked.join(', ')}` : ''}\n${r.output}`);
      outcome.changed ||= outcome.packages.installed.length > 0;
      outcome.warnings.push(...outcome.packages.warnings);
    }
    return outcome;
  }
}

/** Run a step and append its run to the hook journal, failed or not. */
async function journalled<T>(
  j: { journalDir: string; host: string; commit: string },
  name: 'accounts' | 'packages',
  recordedOid: string,
  f: () => Promise<T>,
  summary: (r: T) => string,
): Promise<T> {
  const start = new Date().toISOString();
  const sha256 = crypto.createHash('sha256').update(`${name}\0${recordedOid}`).digest('hex');
  const base = { name, phase: 'step' as const, sha256, commit: j.commit, start, signal: null, timedOut: false };
  try {
    const r = await f();
    appendRun(j.journalDir, j.host, { ...base, end: new Date().toISOString(), exitCode: 0, ok: true, outputTail: summary(r).slice(-4096) });
    return r;
  } catch (e) {
    appendRun(j.journalDir, j.host, { ...base, end: new Date().toISOString(), exitCode: 1, ok: false, outputTail: (e as Error).message.slice(-4096) });
    throw e;
  }
}
