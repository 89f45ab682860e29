import { execFileSync } from 'node:child_process';
import { PachaError } from '../errors.ts';
import type { Logger } from '../log.ts';
import type { InstalledPackage, PackageManifest } from './packages-file.ts';
import { describeFailure, runLogged } from './run-command.ts';

// The rebuild's packages step (after the accounts, before the files): the packages
// .pacha/packages records as installed on purpose (manual) that the host lacks are installed
// with apt-get; their dependencies follow as apt resolves them. Each is pinned to its recorded
// version when the archive still has it (apt-cache madison), else the archive's current
// version is installed with a warning; one that no configured archive has is left out with a
// warning (its repository is added by a pacha_pre hook, or comes with /etc/apt on a second run).
// Recorded manual marks and holds are applied to what is then installed (apt-mark).
// apt has no option to install under another root: under a PACHA_ROOT_DIR other than / the
// step plans and reports, and installs nothing. rpm hosts: planned and reported only too.

export interface PackagesPlan {
  /** Manual packages the host lacks. */
  missing: InstalledPackage[];
  /** Recorded manual, installed here as a dependency: marked manual. */
  markManual: InstalledPackage[];
  /** Recorded held, installed here and not held: held. */
  hold: InstalledPackage[];
  /** null: the step can run; else why it only plans (shown in the plan). */
  cannotInstall: string | null;
  /** Notes for the plan (e.g. /etc/apt not in the snapshot). */
  notes: string[];
}

function key(p: Pick<InstalledPackage, 'name' | 'arch'>): string {
  return `${p.name}:${p.arch}`;
}

/** The host's package of that name and architecture ("all" matches any). */
function find(live: Map<string, InstalledPackage[]>, p: InstalledPackage): InstalledPackage | undefined {
  const same = live.get(p.name) ?? [];
  return same.find((x) => x.arch === p.arch) ?? (p.arch === 'all' || same.some((x) => x.arch === 'all') ? same[0] : undefined);
}

export function planPackages(recorded: PackageManifest, live: PackageManifest | null, opts: { root: string; roots: string[] }): PackagesPlan {
  const byName = new Map<string, InstalledPackage[]>();
  for (const p of live?.packages ?? []) {
    let l = byName.get(p.name);
    if (!l) byName.set(p.name, (l = []));
    l.push(p);
  }
  const plan: PackagesPlan = { missing: [], markManual: [], hold: [], cannotInstall: null, notes: [] };
  for (const p of recorded.packages) {
    const here = find(byName, p);
    if (!here) {
      if (p.manual) plan.missing.push(p);
      continue;
    }
    if (p.manual && !here.manual) plan.markManual.push(p);
    if (p.held && !here.held) plan.hold.push(p);
  }
  // Held packages installed by this step are held after it.
  for (const p of plan.missing) if (p.held) plan.hold.push(p);
  if (live === null) plan.cannotInstall = `this host has no package database under ${opts.root}`;
  else if (recorded.manager !== 'dpkg') plan.cannotInstall = `the snapshot records ${recorded.manager} packages: installing them is not built in (use a pacha_pre hook, see hooks-examples/)`;
  else if (live.manager !== 'dpkg') plan.cannotInstall = `the snapshot records dpkg packages and this host uses ${live.manager}`;
  else if (opts.root !== '/') plan.cannotInstall = `apt-get cannot install under PACHA_ROOT_DIR ${opts.root} (apt has no root option): planned and reported only`;
  const etcApt = opts.roots.some((r) => r === '/' || r === '/etc' || r === '/etc/apt' || r.startsWith('/etc/apt/'));
  if (recorded.packages.length > 0 && !etcApt) {
    plan.notes.push('/etc/apt is not in the snapshot: packages come from the sources this host has now (pacha watch /etc/apt records them; a pacha_pre hook can add a repository)');
  }
  return plan;
}

export function packagesPlanEmpty(p: PackagesPlan): boolean {
  return p.missing.length === 0 && p.markManual.length === 0 && p.hold.length === 0;
}

export function describePackagesPlan(p: PackagesPlan): string[] {
  return [
    ...p.missing.map((x) => `install ${x.name} ${x.version}${x.held ? ' (held)' : ''}`),
    ...p.markManual.map((x) => `mark ${x.name} manual`),
    ...p.hold.filter((x) => !p.missing.includes(x)).map((x) => `hold ${x.name}`),
  ];
}

/** apt-cache madison's versions by package name. */
export function parseMadison(text: string): Map<string, Set<string>> {
  const out = new Map<string, Set<string>>();
  for (const line of text.split('\n')) {
    const f = line.split('|').map((s) => s.trim());
    if (f.length < 3 || f[0] === '' || f[1] === '') continue;
    let s = out.get(f[0]);
    if (!s) out.set(f[0], (s = new Set()));
    s.add(f[1]);
  }
  return out;
}

/**
 * The apt-get arguments for the missing packages: name=version when the archive has the
 * recorded version, else the name (the archive's current version) with a warning; a package the
 * archive does not have at all is left out with a warning. `native`: dpkg's architecture.
 */
export function chooseVersions(missing: InstalledPackage[], versions: Map<string, Set<string>>, native: string): { specs: string[]; warnings: string[] } {
  const specs: string[] = [];
  const warnings: string[] = [];
  for (const p of missing) {
    const name = p.arch === 'all' || p.arch === native ? p.name : `${p.name}:${p.arch}`;
    const have = versions.get(p.name);
    if (!have || have.size === 0) {
      warnings.push(`package ${name} ${p.version} is in no configured archive: not installed (add its repository in a pacha_pre hook)`);
    } else if (have.has(p.version)) {
      specs.push(`${name}=${p.version}`);
    } else {
      warnings.push(`package ${name}: the recorded version ${p.version} is not in the archive any more: installing the archive's current one (${[...have].join(', ')})`);
      specs.push(name);
    }
  }
  return { specs, warnings };
}

export interface PackagesStepResult {
  installed: string[];
  marked: string[];
  warnings: string[];
  output: string;
}

const APT_ENV = { DEBIAN_FRONTEND: 'noninteractive', NEEDRESTART_MODE: 'a', APT_LISTCHANGES_FRONTEND: 'none' };
// Wait for another apt or dpkg run instead of failing at once; keep the host's configuration
// files when a package ships its own (the snapshot's replace them right after).
const APT_OPTS = ['-o', 'DPkg::Lock::Timeout=600', '-o', 'Dpkg::Options::=--force-confdef', '-o', 'Dpkg::Options::=--force-confold'];

export async function runPackagesStep(plan: PackagesPlan, opts: { log: Logger }): Promise<PackagesStepResult> {
  const { log } = opts;
  const out: PackagesStepResult = { installed: [], marked: [], warnings: [], output: '' };
  const warn = (m: string) => {
    log.warn(m);
    out.warnings.push(m);
  };
  if (plan.cannotInstall !== null) {
    if (!packagesPlanEmpty(plan)) warn(`packages not installed: ${plan.cannotInstall}: ${describePackagesPlan(plan).join(', ')}`);
    return out;
  }
  const run = async (cmd: string, args: string[], what: string) => {
    const r = await runLogged(cmd, [...args], { label: '[packages]', log, env: APT_ENV });
    out.output = (out.output + `$ ${cmd} ${args.join(' ')}\n` + r.tail).slice(-4096);
    if (r.code !== 0) {
      throw new PachaError(`packages: ${what} failed: ${describeFailure(r)}${r.tail.trim() ? `\n${r.tail.trimEnd()}` : ''}`, {
        hint: 'fix the cause (a repository a pacha_pre hook must add, the network), then run the same rebuild again; --no-packages skips this step',
      });
    }
  };
  const specs: string[] = [];
  if (plan.missing.length > 0) {
    // Fresh lists first: the archive's versions move, and a fresh host's lists may be old or absent.
    await run('apt-get', ['update', '-q', ...APT_OPTS], 'apt-get update');
    const native = execFileSync('dpkg', ['--print-architecture'], { encoding: 'utf8' }).trim();
    const names = [...new Set(plan.missing.map((p) => p.name))];
    let madison = '';
    try {
      madison = execFileSync('apt-cache', ['madison', ...names], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], maxBuffer: 16 * 1024 * 1024 });
    } catch (e) {
      // madison exits 0 even for unknown names on current apt; an old one may not: use what it printed.
      madison = String((e as { stdout?: unknown }).stdout ?? '');
    }
    const chosen = chooseVersions(plan.missing, parseMadison(madison), native);
    specs.push(...chosen.specs);
    for (const w of chosen.warnings) warn(w);
  }
  if (specs.length > 0) {
    await run('apt-get', ['install', '-y', '-q', ...APT_OPTS, ...specs], `apt-get install ${specs.join(' ')}`);
    out.installed.push(...specs);
  }
  // Marks: only of what is installed now (a package left out above is skipped).
  const installedNames = new Set(specs.map((s) => s.replace(/[:=].*$/, '')));
  const manual = plan.markManual.map((p) => p.name);
  if (manual.length) {
    await run('apt-mark', ['manual', ...manual], 'apt-mark manual');
    out.marked.push(...manual.map((n) => `${n} manual`));
  }
  const hold = plan.hold.filter((p) => !plan.missing.includes(p) || installedNames.has(p.name)).map((p) => p.name);
  if (hold.length) {
    await run('apt-mark', ['hold', ...hold], 'apt-mark hold');
    out.marked.push(...hold.map((n) => `${n} held`));
  }
  if (out.installed.length) log.info(`packages: installed ${out.installed.join(' ')}`);
  return out;
}
