import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import { createLogger } from '../src/log.ts';
import { decodePackages, diffPackages, encodePackages, type PackageManifest } from '../src/host/packages-file.ts';
import { chooseVersions, parseMadison, planPackages } from '../src/host/package-step.ts';
import { packageDatabaseFiles, packageManifestForSnapshot, parseDpkgStatus, parseExtendedStates, parseRpmQuery, readPackageManifest } from '../src/host/packages.ts';
import { generatePackages, writeDpkgDatabase } from '@pacha/test-support/dpkg-fixture';

// The package manifest: this machine's real dpkg database against dpkg-query and apt-mark,
// fabricated databases under a temporary root dir, the text format and its diff.

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});
function tmpRoot(): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'pacha-pkgs-'));
  dirs.push(d);
  return d;
}
function lines(cmd: string, args: string[]): string[] {
  return execFileSync(cmd, args, { encoding: 'utf8' }).split('\n').filter((l) => l !== '');
}
const haveDpkg = fs.existsSync('/var/lib/dpkg/status') && fs.existsSync('/usr/bin/dpkg-query');

describe('reading the dpkg database', () => {
  it.runIf(haveDpkg)("this machine's /var/lib/dpkg/status: the same packages, versions, manual and held marks as dpkg-query and apt-mark", () => {
    // Other tests may run apt meanwhile (rebuild-packages.test.ts): compare readings taken while
    // the database stayed the same (its signature before and after), trying again otherwise.
    const sig = () => ['/var/lib/dpkg/status', '/var/lib/apt/extended_states'].map((f) => `${fs.statSync(f).size}:${fs.statSync(f).mtimeMs}`).join('/');
    for (let attempt = 1; ; attempt++) {
      const before = sig();
      const marks = parseExtendedStates(fs.readFileSync('/var/lib/apt/extended_states', 'latin1'));
      const pkgs = parseDpkgStatus(fs.readFileSync('/var/lib/dpkg/status', 'latin1'), marks);
      const installed = lines('dpkg-query', ['-W', '-f', '${db:Status-Abbrev}\t${Package}\t${Architecture}\t${Version}\n'])
        .filter((l) => /^[ih][iWtUF]/.test(l))
        .map((l) => l.split('\t').slice(1).join('\t'))
        .sort();
      const manual = new Set(lines('apt-mark', ['showmanual']).map((n) => n.replace(/:.*$/, '')));
      const held = new Set(lines('apt-mark', ['showhold']).map((n) => n.replace(/:.*$/, '')));
      if (sig() !== before && attempt < 10) continue;
      expect(pkgs.map((p) => `${p.name}\t${p.arch}\t${p.version}`).sort()).toEqual(installed);
      expect(new Set(pkgs.filter((p) => p.manual).map((p) => p.name))).toEqual(manual);
      expect(new Set(pkgs.filter((p) => p.held).map((p) => p.name))).toEqual(held);
      expect(pkgs.length).toBeGreaterThan(50);
      break;
    }
  });

  it('a generated 2,000-package database: states, marks, holds, architectures, epochs', () => {
    const root = tmpRoot();
    const gen = generatePackages(2000);
    writeDpkgDatabase(root, gen);
    const r = readPackageManifest(root);
    expect(r.cached).toBe(false);
    const m = r.manifest!;
    expect(m.manager).toBe('dpkg');
    // every 250th (i % 250 === 1) has only its config files left: not installed
    expect(m.packages.length).toBe(2000 - 8);
    const by = new Map(m.packages.map((p) => [p.name, p]));
    expect(by.has('pkg00001')).toBe(false);
    expect(by.get('pkg00000')).toEqual({ name: 'pkg00000', arch: 'all', version: '1:1.0.0-1+deb12u0', manual: false, held: true });
    expect(by.get('pkg00002')).toEqual({ name: 'pkg00002', arch: 'amd64', version: '3.2.2-3+deb12u0', manual: true, held: false });
    // arch "all" packages take the mark apt records under the native architecture
    expect(by.get('pkg00010')?.manual).toBe(true);
    expect(by.get('pkg00030')?.manual).toBe(false);
    expect(m.packages.filter((p) => p.held).length).toBe(20);
    expect(r.text).toBe(encodePackages(m));
  });

  it('is served from the cache until the status file or the marks change', () => {
    const root = tmpRoot();
    const gen = generatePackages(20);
    writeDpkgDatabase(root, gen);
    expect(readPackageManifest(root).cached).toBe(false);
    const again = readPackageManifest(root);
    expect(again.cached).toBe(true);
    expect(packageDatabaseFiles(root)).toEqual([path.join(root, 'var/lib/dpkg/status'), path.join(root, 'var/lib/apt/extended_states')]);
    // apt-mark manual pkg00003: only extended_states changes
    gen[3].auto = false;
    writeDpkgDatabase(root, gen);
    const marked = readPackageManifest(root);
    expect(marked.cached).toBe(false);
    expect(marked.manifest!.packages.find((p) => p.name === 'pkg00003')?.manual).toBe(true);
    gen[4].version = '9.9-9';
    writeDpkgDatabase(root, gen);
    expect(readPackageManifest(root).manifest!.packages.find((p) => p.name === 'pkg00004')?.version).toBe('9.9-9');
  });

  it('no package database: no manifest, and the notice once per state dir', () => {
    const root = tmpRoot();
    const state = path.join(root, 'state');
    fs.mkdirSync(state);
    const out: string[] = [];
    const stream = new Writable({ write: (chunk: Buffer, _enc, done) => (out.push(chunk.toString()), done()) });
    const log = createLogger({ stream });
    expect(packageManifestForSnapshot(root, state, log).manifest).toBeNull();
    expect(packageManifestForSnapshot(root, state, log).manifest).toBeNull();
    expect(out).toEqual([`no package database (dpkg or rpm) under ${root}: .pacha/packages is not recorded\n`]);
    // A database appears: the marker goes, so a later loss is told again.
    writeDpkgDatabase(root, generatePackages(3));
    expect(packageManifestForSnapshot(root, state, log).manifest?.packages.map((p) => p.name)).toEqual(['pkg00000', 'pkg00002']);
    expect(fs.existsSync(path.join(state, 'packages.notice'))).toBe(false);
  });

  it('rpm -qa output: epochs, noarch, gpg-pubkey left out', () => {
    const pk = parseRpmQuery('bash\tx86_64\t5.2.26-3.fc40\ngpg-pubkey\t(none)\t8f12b1a2-1\nperl-Errno\tx86_64\t0:1.37-506.fc40\ntzdata\tnoarch\t2024a-5.fc40\n');
    expect(encodePackages({ manager: 'rpm', packages: pk })).toBe(
      '# package manager: rpm (name, architecture, version, manual|auto[,held])\nbash\tx86_64\t5.2.26-3.fc40\tmanual\nperl-Errno\tx86_64\t0:1.37-506.fc40\tmanual\ntzdata\tnoarch\t2024a-5.fc40\tmanual\n',
    );
  });
});

describe('.pacha/packages', () => {
  const m: PackageManifest = {
    manager: 'dpkg',
    packages: [
      { name: 'nginx', arch: 'amd64', version: '1.22.1-9', manual: true, held: true },
      { name: 'libc6', arch: 'i386', version: '2.36-9', manual: false, held: false },
      { name: 'libc6', arch: 'amd64', version: '2.36-9', manual: false, held: false },
    ],
  };

  it('sorted by name and architecture, one line each; decodes to the same', () => {
    const text = encodePackages(m);
    expect(text).toBe(
      '# package manager: dpkg (name, architecture, version, manual|auto[,held])\nlibc6\tamd64\t2.36-9\tauto\nlibc6\ti386\t2.36-9\tauto\nnginx\tamd64\t1.22.1-9\tmanual,held\n',
    );
    expect(encodePackages(decodePackages(text))).toBe(text);
  });

  it('bad lines name the line and the accepted shape', () => {
    expect(() => decodePackages('nginx\tamd64\t1\tmanual\n')).toThrow(/line 1: expected "# package manager: dpkg"/);
    expect(() => decodePackages('# package manager: dpkg\nnginx\tamd64\t1\n')).toThrow(/line 2: 3 fields \(expected: name<TAB>architecture/);
    expect(() => decodePackages('# package manager: dpkg\nnginx\tamd64\t1\tmaybe\n')).toThrow(/line 2: bad flags "maybe"/);
    expect(() => decodePackages('# package manager: dpkg\nnginx x\tamd64\t1\tauto\n')).toThrow(/line 2: bad package name "nginx x"/);
    // A name or version from a repository becomes an apt-get argument: never an option.
    expect(() => decodePackages('# package manager: dpkg\n-oDebug::pkgProblemResolver=1\tamd64\t1\tmanual\n')).toThrow(/line 2: bad package name/);
    expect(() => decodePackages('# package manager: dpkg\nhello\tamd64\t--reinstall\tmanual\n')).toThrow(/line 2: bad version "--reinstall"/);
  });

  it('diff: installed, removed, upgraded, marked, held; architectures only where a name has several', () => {
    const after: PackageManifest = {
      manager: 'dpkg',
      packages: [
        { name: 'nginx', arch: 'amd64', version: '1.22.1-10', manual: true, held: false },
        { name: 'libc6', arch: 'amd64', version: '2.36-9', manual: true, held: false },
        { name: 'hello', arch: 'amd64', version: '2.10-3', manual: true, held: false },
      ],
    };
    expect(diffPackages(m, after)).toEqual(['+hello 2.10-3', 'libc6:amd64 (auto → manual)', '-libc6:i386', 'nginx 1.22.1-9 → 1.22.1-10 (no longer held)']);
    expect(diffPackages(null, { manager: 'dpkg', packages: [m.packages[0]] })).toEqual(['+nginx 1.22.1-9']);
    expect(diffPackages(m, m)).toEqual([]);
  });
});

describe('the rebuild\'s packages step: what to install', () => {
  const pkg = (name: string, version: string, extra: Partial<PackageManifest['packages'][number]> = {}) => ({ name, arch: 'amd64', version, manual: true, held: false, ...extra });

  it('pins the recorded version when the archive has it, else the current one with a warning; leaves out what no archive has', () => {
    const madison = parseMadison(
      '     hello |     2.10-3 | http://deb.debian.org/debian bookworm/main amd64 Packages\n' +
        '     nginx | 1.22.1-9+deb12u2 | http://deb.debian.org/debian-security bookworm-security/main amd64 Packages\n' +
        '     nginx | 1.22.1-9 | http://deb.debian.org/debian bookworm/main amd64 Packages\n' +
        '    libfoo | 1.0-1 | http://deb.debian.org/debian bookworm/main i386 Packages\n',
    );
    const r = chooseVersions([pkg('hello', '2.10-3'), pkg('nginx', '1.22.1-8'), pkg('gone', '1.0'), pkg('libfoo', '1.0-1', { arch: 'i386' }), pkg('tzdata', '2025b', { arch: 'all' })], madison, 'amd64');
    expect(r.specs).toEqual(['hello=2.10-3', 'nginx', 'libfoo:i386=1.0-1']);
    expect(r.warnings).toEqual([
      "package nginx: the recorded version 1.22.1-8 is not in the archive any more: installing the archive's current one (1.22.1-9+deb12u2, 1.22.1-9)",
      'package gone 1.0 is in no configured archive: not installed (add its repository in a pacha_pre hook)',
      'package tzdata 2025b is in no configured archive: not installed (add its repository in a pacha_pre hook)',
    ]);
  });

  it('plans the manual packages the host lacks, marks and holds; says why it cannot install and when /etc/apt is not recorded', () => {
    const recorded: PackageManifest = { manager: 'dpkg', packages: [pkg('hello', '2.10-3'), pkg('libc6', '2.36-9', { manual: false }), pkg('nginx', '1.22.1-9', { held: true }), pkg('curl', '7.88', { held: true })] };
    const live: PackageManifest = { manager: 'dpkg', packages: [pkg('libc6', '2.36-9', { manual: false }), pkg('nginx', '1.22.1-9', { manual: false })] };
    const p = planPackages(recorded, live, { root: '/', roots: ['/etc/nginx'] });
    expect(p.missing.map((x) => x.name)).toEqual(['hello', 'curl']);
    expect(p.markManual.map((x) => x.name)).toEqual(['nginx']);
    expect(p.hold.map((x) => x.name)).toEqual(['nginx', 'curl']);
    expect(p.cannotInstall).toBeNull();
    expect(p.notes[0]).toMatch(/^\/etc\/apt is not in the snapshot/);
    expect(planPackages(recorded, live, { root: '/', roots: ['/etc/apt', '/etc/nginx'] }).notes).toEqual([]);
    expect(planPackages(recorded, live, { root: '/srv/vol', roots: ['/etc'] }).cannotInstall).toMatch(/apt-get cannot install under PACHA_ROOT_DIR \/srv\/vol/);
    expect(planPackages({ ...recorded, manager: 'rpm' }, live, { root: '/', roots: [] }).cannotInstall).toMatch(/records rpm packages: installing them is not built in/);
  });
});

