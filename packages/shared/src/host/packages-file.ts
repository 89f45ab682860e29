import { FormatError } from '../format/entry.ts';

// `.pacha/packages`: the host's package manifest, one line per installed package, sorted by
// name then architecture (byte order), so that `git log -p` shows an install, a removal or an
// upgrade as one readable line:
//
//   # package manager: dpkg (name, architecture, version, manual|auto[,held])
//   hello	amd64	2.10-3	manual
//   libc6	amd64	2.36-9+deb12u10	auto
//   nginx	amd64	1.22.1-9	manual,held
//
// manual: installed on purpose (apt-mark showmanual); auto: pulled in as a dependency (apt's
// Auto-Installed: 1). held: dpkg's selection is "hold". rpm keeps no such mark: every rpm
// package is "manual".

export const PACKAGES_FILE = '.pacha/packages';

export type PackageManager = 'dpkg' | 'rpm';

export interface InstalledPackage {
  name: string;
  arch: string;
  version: string;
  manual: boolean;
  held: boolean;
}

export interface PackageManifest {
  manager: PackageManager;
  /** Sorted by name, then architecture. */
  packages: InstalledPackage[];
}

const HEADER = /^# package manager: (dpkg|rpm)\b/;
// Names, architectures and versions as dpkg and rpm make them. They become apt-get arguments in
// a rebuild: none may start with '-' (it would be read as an option).
const NAME = /^[A-Za-z0-9_][A-Za-z0-9_.+-]*$/;
const ARCH = /^[A-Za-z0-9_][A-Za-z0-9_.-]*$/;
const VERSION = /^[A-Za-z0-9_][A-Za-z0-9_.+~:^-]*$/;

// Package names and architectures are ASCII (dpkg: [a-z0-9+.-], rpm likewise), where the order
// of UTF-16 code units is the order of bytes: no Buffer per comparison.
const byCodeUnits = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

export function comparePackages(a: Pick<InstalledPackage, 'name' | 'arch'>, b: Pick<InstalledPackage, 'name' | 'arch'>): number {
  return byCodeUnits(a.name, b.name) || byCodeUnits(a.arch, b.arch);
}

export function sortPackages(list: InstalledPackage[]): InstalledPackage[] {
  return list.sort(comparePackages);
}

export function encodePackages(m: PackageManifest): string {
  let out = `# package manager: ${m.manager} (name, architecture, version, manual|auto[,held])\n`;
  for (const p of [...m.packages].sort(comparePackages)) {
    out += `${p.name}\t${p.arch}\t${p.version}\t${p.manual ? 'manual' : 'auto'}${p.held ? ',held' : ''}\n`;
  }
  return out;
}

/** Parse .pacha/packages; errors name the line and what is accepted. */
export function decodePackages(text: string): PackageManifest {
  const lines = text.split('\n');
  if (lines[lines.length - 1] === '') lines.pop();
  const h = HEADER.exec(lines[0] ?? '');
  if (!h) throw new FormatError(`${PACKAGES_FILE} line 1: expected "# package manager: dpkg" or "# package manager: rpm"`);
  const packages: InstalledPackage[] = [];
  for (let i = 1; i < lines.length; i++) {
    const f = lines[i].split('\t');
    const bad = (why: string) => new FormatError(`${PACKAGES_FILE} line ${i + 1}: ${why} (expected: name<TAB>architecture<TAB>version<TAB>manual|auto[,held])`);
    if (f.length !== 4) throw bad(`${f.length} fields`);
    const [name, arch, version, flags] = f;
    if (!NAME.test(name)) throw bad(`bad package name "${name}" (letters, digits, '_', '.', '+', '-', not starting with '.', '+' or '-')`);
    if (!ARCH.test(arch)) throw bad(`bad architecture "${arch}"`);
    if (!VERSION.test(version)) throw bad(`bad version "${version}"`);
    const fl = flags.split(',');
    const mark = fl[0];
    if ((mark !== 'manual' && mark !== 'auto') || fl.length > 2 || (fl.length === 2 && fl[1] !== 'held')) throw bad(`bad flags "${flags}"`);
    packages.push({ name, arch, version, manual: mark === 'manual', held: fl.length === 2 });
  }
  return { manager: h[1] as PackageManager, packages: sortPackages(packages) };
}

/** name, plus :arch when a name is installed for several architectures (as dpkg shows them). */
function label(p: InstalledPackage, multi: Set<string>): string {
  return multi.has(p.name) ? `${p.name}:${p.arch}` : p.name;
}

/**
 * What changed between two manifests, one line per package, in name order:
 *   +nginx 1.22.1-9            installed
 *   -apache2                   removed
 *   nginx 1.22.1-8 → 1.22.1-9  upgraded or downgraded
 *   nginx (auto → manual)      marked; (held) / (no longer held)
 * A missing manifest (null) counts as empty.
 */
export function diffPackages(before: PackageManifest | null, after: PackageManifest | null): string[] {
  const key = (p: InstalledPackage) => `${p.name}\0${p.arch}`;
  const a = new Map((before?.packages ?? []).map((p) => [key(p), p]));
  const b = new Map((after?.packages ?? []).map((p) => [key(p), p]));
  const archs = new Map<string, Set<string>>();
  for (const p of [...a.values(), ...b.values()]) {
    let s = archs.get(p.name);
    if (!s) archs.set(p.name, (s = new Set()));
    s.add(p.arch);
  }
  const multi = new Set([...archs].filter(([, s]) => s.size > 1).map(([n]) => n));
  const keys = [...new Set([...a.keys(), ...b.keys()])].sort(byCodeUnits);
  const out: string[] = [];
  for (const k of keys) {
    const x = a.get(k);
    const y = b.get(k);
    if (!x) out.push(`+${label(y!, multi)} ${y!.version}`);
    else if (!y) out.push(`-${label(x, multi)}`);
    else {
      const parts: string[] = [];
      if (x.version !== y.version) parts.push(`${x.version} → ${y.version}`);
      const notes: string[] = [];
      if (x.manual !== y.manual) notes.push(y.manual ? 'auto → manual' : 'manual → auto');
      if (x.held !== y.held) notes.push(y.held ? 'held' : 'no longer held');
      if (notes.length) parts.push(`(${notes.join(', ')})`);
      if (parts.length) out.push(`${label(y, multi)} ${parts.join(' ')}`);
    }
  }
  return out;
}
