import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import type { Logger } from '../log.ts';
import { hostPath } from '../paths.ts';
import { encodePackages, sortPackages, type InstalledPackage, type PackageManifest } from './packages-file.ts';

// The host's package database, read for `.pacha/packages` (packages-file.ts).
// dpkg: /var/lib/dpkg/status and apt's /var/lib/apt/extended_states are read directly (no
// dpkg-query, no apt-mark: a process start costs more than the parse). rpm: `rpm -qa` with
// --root. Anything else: no manifest, and one notice per state dir.
// The result is kept per root dir and reused while the database files keep their size, mtime
// and inode: a daemon snapshot pays one stat per file when no package changed.

export const DPKG_STATUS = '/var/lib/dpkg/status';
export const APT_EXTENDED_STATES = '/var/lib/apt/extended_states';
/** Where rpm keeps its database (sqlite since rpm 4.16, Berkeley DB before; /usr/lib/sysimage on openSUSE and newer Fedora). */
export const RPM_DATABASES = ['/var/lib/rpm/rpmdb.sqlite', '/var/lib/rpm/Packages', '/usr/lib/sysimage/rpm/rpmdb.sqlite', '/usr/lib/sysimage/rpm/Packages'];

/** Marks from extended_states: name -> architecture -> auto-installed. */
export type AutoMarks = Map<string, Map<string, boolean>>;

/** dpkg states in which a package's files are on the host (everything but not-installed, config-files, half-installed). */
const PRESENT = new Set(['installed', 'triggers-pending', 'triggers-awaited', 'half-configured', 'unpacked']);

/** Parse apt's extended_states (Package / Architecture / Auto-Installed stanzas). */
export function parseExtendedStates(text: string): AutoMarks {
  const marks: AutoMarks = new Map();
  let name = '';
  let arch = '';
  let auto: boolean | undefined;
  const flush = () => {
    if (name !== '' && auto !== undefined) {
      let m = marks.get(name);
      if (!m) marks.set(name, (m = new Map()));
      m.set(arch, auto);
    }
    name = '';
    arch = '';
    auto = undefined;
  };
  forEachLine(text, (line) => {
    if (line === '') flush();
    else if (line.startsWith('Package:')) name = line.slice(8).trim();
    else if (line.startsWith('Architecture:')) arch = line.slice(13).trim();
    else if (line.startsWith('Auto-Installed:')) auto = line.slice(15).trim() === '1';
  });
  flush();
  return marks;
}

function isAuto(marks: AutoMarks, name: string, arch: string): boolean {
  const m = marks.get(name);
  if (!m) return false;
  const v = m.get(arch);
  if (v !== undefined) return v;
  // apt records Architecture: all packages under the native architecture.
  if (arch === 'all') for (const x of m.values()) return x;
  return false;
}

/** Calls f for every line (without its newline), a last line without newline included. */
function forEachLine(text: string, f: (line: string) => void): void {
  let pos = 0;
  const n = text.length;
  while (pos < n) {
    let end = text.indexOf('\n', pos);
    if (end < 0) end = n;
    f(text.slice(pos, end));
    pos = end + 1;
  }
}

/**
 * Parse /var/lib/dpkg/status: the packages whose files are on the host, with apt's marks.
 * Stanzas are found by searching for "\nPackage:" and their fields by searching within them
 * (native string search), so the long Description and Conffiles blocks are skipped without a
 * JavaScript step per line: that keeps the first parse in a new process short too.
 */
export function parseDpkgStatus(text: string, marks: AutoMarks): InstalledPackage[] {
  const out: InstalledPackage[] = [];
  const t = text.startsWith('Package:') ? '\n' + text : text;
  const field = (name: string, from: number, to: number): string => {
    const i = t.indexOf(name, from);
    if (i < 0 || i >= to) return '';
    const start = i + name.length;
    let end = t.indexOf('\n', start);
    if (end < 0 || end > to) end = to;
    return t.slice(start, end).trim();
  };
  let at = t.indexOf('\nPackage:');
  while (at >= 0) {
    const next = t.indexOf('\nPackage:', at + 9);
    const to = next < 0 ? t.length : next;
    const name = field('\nPackage:', at, to);
    const status = field('\nStatus:', at, to);
    const version = field('\nVersion:', at, to);
    const arch = field('\nArchitecture:', at, to);
    const st = status.split(/\s+/);
    if (name !== '' && version !== '' && st.length === 3 && PRESENT.has(st[2])) {
      out.push({ name, arch: arch || 'none', version, manual: !isAuto(marks, name, arch), held: st[0] === 'hold' });
    }
    at = next;
  }
  return sortPackages(out);
}

/** The query format given to rpm -qa: name, architecture, [epoch:]version-release. */
export const RPM_QUERY_FORMAT = '%{NAME}\\t%{ARCH}\\t%|EPOCH?{%{EPOCH}:}:{}|%{VERSION}-%{RELEASE}\\n';

/** Parse the output of rpm -qa --qf RPM_QUERY_FORMAT. The gpg-pubkey pseudo-packages are left out. */
export function parseRpmQuery(text: string): InstalledPackage[] {
  const out: InstalledPackage[] = [];
  forEachLine(text, (line) => {
    const f = line.split('\t');
    if (f.length !== 3 || f[0] === '' || f[0] === 'gpg-pubkey') return;
    out.push({ name: f[0], arch: f[1] === '(none)' || f[1] === '' ? 'none' : f[1], version: f[2], manual: true, held: false });
  });
  return sortPackages(out);
}

/** What read() found. */
export interface ManifestRead {
  manifest: PackageManifest | null;
  /** encodePackages(manifest), null without one. */
  text: string | null;
  /** Why there is no manifest. */
  notice?: string;
  /** Served from the cache: the database files had not changed. */
  cached: boolean;
}

function fileSig(file: string): string {
  try {
    const st = fs.statSync(file, { bigint: true });
    return `${st.size}:${st.mtimeNs}:${st.ino}`;
  } catch {
    return '-';
  }
}

function exists(file: string): boolean {
  try {
    fs.statSync(file);
    return true;
  } catch {
    return false;
  }
}

function hasCommand(cmd: string): string | null {
  for (const dir of (process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin').split(':')) {
    if (dir === '') continue;
    const f = path.join(dir, cmd);
    try {
      fs.accessSync(f, fs.constants.X_OK);
      return f;
    } catch {
      // not here
    }
  }
  return null;
}

/** The files whose change may change the manifest (the daemon watches them). */
export function packageDatabaseFiles(root: string): string[] {
  const dpkg = hostPath(DPKG_STATUS, root);
  if (exists(dpkg)) return [dpkg, hostPath(APT_EXTENDED_STATES, root)];
  return RPM_DATABASES.map((f) => hostPath(f, root)).filter(exists);
}

const cache = new Map<string, { sig: string; read: ManifestRead }>();

/** The host's package manifest; reuses the last result while the database files are unchanged. */
export function readPackageManifest(root: string): ManifestRead {
  const dpkg = hostPath(DPKG_STATUS, root);
  const files = packageDatabaseFiles(root);
  const sig = files.length === 0 ? 'none' : files.map(fileSig).join('/');
  const hit = cache.get(root);
  if (hit && hit.sig === sig) return { ...hit.read, cached: true };
  let read: ManifestRead;
  if (files[0] === dpkg) {
    let marks: AutoMarks = new Map();
    try {
      marks = parseExtendedStates(fs.readFileSync(hostPath(APT_EXTENDED_STATES, root), 'latin1'));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    }
    // latin1: a byte per character, no UTF-8 decoding; names and versions are ASCII.
    const manifest: PackageManifest = { manager: 'dpkg', packages: parseDpkgStatus(fs.readFileSync(dpkg, 'latin1'), marks) };
    read = { manifest, text: encodePackages(manifest), cached: false };
  } else if (files.length > 0) {
    const rpm = hasCommand('rpm');
    if (rpm === null) {
      read = { manifest: null, text: null, notice: `an rpm database is in ${path.dirname(files[0])} but there is no rpm command: .pacha/packages is not recorded`, cached: false };
    } else {
      const args = [...(root === '/' ? [] : ['--root', root]), '-qa', '--qf', RPM_QUERY_FORMAT];
      const out = execFileSync(rpm, args, { encoding: 'latin1', maxBuffer: 64 * 1024 * 1024, timeout: 120_000, stdio: ['ignore', 'pipe', 'pipe'] });
      const manifest: PackageManifest = { manager: 'rpm', packages: parseRpmQuery(out) };
      read = { manifest, text: encodePackages(manifest), cached: false };
    }
  } else {
    read = { manifest: null, text: null, notice: `no package database (dpkg or rpm) under ${root}: .pacha/packages is not recorded`, cached: false };
  }
  cache.set(root, { sig, read });
  return read;
}

/**
 * The manifest for a snapshot. Without one, the notice is logged once per state dir (a marker
 * file remembers it), not at every snapshot.
 */
export function packageManifestForSnapshot(root: string, stateDir: string, log: Logger): ManifestRead {
  const read = readPackageManifest(root);
  const marker = path.join(stateDir, 'packages.notice');
  if (read.notice !== undefined) {
    if (!exists(marker)) {
      log.info(read.notice);
      try {
        fs.writeFileSync(marker, read.notice + '\n', { mode: 0o600 });
      } catch {
        // the notice will simply come again
      }
    }
  } else if (!read.cached) {
    fs.rmSync(marker, { force: true });
  }
  return read;
}

/**
 * Watch the package database (the daemon): `onChange` gets the host file's local path when
 * dpkg, apt or rpm rewrites it. The directories are watched, not the files: dpkg and apt
 * replace their files by renaming a new one over them.
 */
export function watchPackageDatabase(root: string, onChange: (file: string) => void, log: Logger): { close(): void } {
  const files = packageDatabaseFiles(root);
  const byDir = new Map<string, Set<string>>();
  for (const f of files) {
    let s = byDir.get(path.dirname(f));
    if (!s) byDir.set(path.dirname(f), (s = new Set()));
    s.add(path.basename(f));
  }
  const watchers: fs.FSWatcher[] = [];
  for (const [dir, names] of byDir) {
    try {
      const w = fs.watch(dir, { persistent: false }, (_event, name) => {
        if (name !== null && names.has(String(name))) onChange(path.join(dir, String(name)));
      });
      w.on('error', (e) => log.debug(`watching ${dir}: ${e.message}`));
      watchers.push(w);
    } catch (e) {
      log.debug(`cannot watch ${dir} for package changes: ${(e as Error).message} (the reconcile scan still records them)`);
    }
  }
  return { close: () => watchers.forEach((w) => w.close()) };
}
