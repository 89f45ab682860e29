import fs from 'node:fs';
import path from 'node:path';

// Fabricated dpkg databases (/var/lib/dpkg/status and apt's extended_states) for a host under a
// temporary root dir: stanzas shaped like Debian's own (multi-line descriptions, conffiles,
// dependencies), about as long as the real ones, so that parsing costs what it costs on a host.

export interface FakePackage {
  name: string;
  version: string;
  arch?: string;
  /** dpkg selection: install (default), hold, deinstall... */
  want?: string;
  /** dpkg state: installed (default), config-files, half-installed, unpacked... */
  state?: string;
  /** Auto-Installed: 1 in extended_states. */
  auto?: boolean;
}

function stanza(p: FakePackage): string {
  const arch = p.arch ?? 'amd64';
  return [
    `Package: ${p.name}`,
    `Status: ${p.want ?? 'install'} ok ${p.state ?? 'installed'}`,
    'Priority: optional',
    'Section: misc',
    'Installed-Size: 1234',
    'Maintainer: Debian Example Maintainers <pkg-example@lists.example.org>',
    `Architecture: ${arch}`,
    'Multi-Arch: same',
    `Version: ${p.version}`,
    'Depends: libc6 (>= 2.34), libssl3 (>= 3.0.0), zlib1g (>= 1:1.2.0), debconf (>= 0.5) | debconf-2.0',
    'Conffiles:',
    ` /etc/${p.name}/${p.name}.conf 0123456789abcdef0123456789abcdef`,
    ` /etc/default/${p.name} fedcba9876543210fedcba9876543210`,
    `Description: example package ${p.name} for the parser's tests and benchmarks`,
    ' This long description spans several lines, as Debian descriptions do. The parser must',
    ' skip it without looking at it: only Package, Status, Architecture and Version matter.',
    ' .',
    ' Some descriptions hold UTF-8: café, naïve, Grüße; and lines that look like fields:',
    ' Package: not-a-package',
    `Homepage: https://example.org/${p.name}`,
    '',
  ].join('\n');
}

export function dpkgStatusText(pkgs: FakePackage[]): string {
  return pkgs.map((p) => stanza(p) + '\n').join('');
}

export function extendedStatesText(pkgs: FakePackage[]): string {
  return pkgs
    .filter((p) => p.auto !== undefined)
    .map((p) => `Package: ${p.name}\nArchitecture: ${p.arch === 'all' || p.arch === undefined ? 'amd64' : p.arch}\nAuto-Installed: ${p.auto ? 1 : 0}\n\n`)
    .join('');
}

/** n packages: every third auto-installed, every 100th held, every 250th only config files left. */
export function generatePackages(n: number): FakePackage[] {
  const out: FakePackage[] = [];
  for (let i = 0; i < n; i++) {
    out.push({
      name: `pkg${String(i).padStart(5, '0')}`,
      version: `${i % 7 === 0 ? '1:' : ''}${1 + (i % 5)}.${i % 13}.${i % 3}-${1 + (i % 4)}+deb12u${i % 2}`,
      arch: i % 10 === 0 ? 'all' : 'amd64',
      want: i % 100 === 0 ? 'hold' : 'install',
      state: i % 250 === 1 ? 'config-files' : 'installed',
      auto: i % 3 === 0,
    });
  }
  return out;
}

/** Write the two files under root (a fake host). */
export function writeDpkgDatabase(root: string, pkgs: FakePackage[]): void {
  fs.mkdirSync(path.join(root, 'var/lib/dpkg'), { recursive: true });
  fs.mkdirSync(path.join(root, 'var/lib/apt'), { recursive: true });
  // As dpkg and apt do: a new file renamed over the old one.
  const put = (file: string, text: string) => {
    fs.writeFileSync(`${file}-new`, text);
    fs.renameSync(`${file}-new`, file);
  };
  put(path.join(root, 'var/lib/dpkg/status'), dpkgStatusText(pkgs));
  put(path.join(root, 'var/lib/apt/extended_states'), extendedStatesText(pkgs));
}
