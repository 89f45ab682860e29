// `npm run package`: pacha_<version>_<arch>.deb that carries its own runtime.
//
// Layout (docs/install.md says why this one and not a single executable application):
//   /usr/lib/pacha/node                    Node.js from the npm `node` package, stripped
//   /usr/lib/pacha/pacha.bundle.cjs, pacha-master.bundle.cjs   the esbuild bundles (scripts/build.ts), CommonJS
//   /usr/lib/pacha/*-worker.bundle.cjs     the master's worker threads, bundled the same way
//   /usr/lib/pacha/compile-cache/          V8 code cache of both bundles, made here at build time
//   /usr/lib/pacha/*.node                  native addons the bundles load, if any
//   /usr/lib/pacha/pacha.cjs, pacha-master.cjs   launchers: code cache on, then the bundle
//   /usr/bin/pacha, /usr/bin/pacha-master  sh wrappers: exec /usr/lib/pacha/node <launcher>
// plus the systemd units, /etc/pacha.conf (conffile), man pages rendered from packaging/man.md,
// bash completion, hook examples, docs, copyright and changelog.
//
// Usage: node scripts/package.ts [--out DIR] [--fast] [--keep-staging]   (prints the .deb's path last;
// --json prints {"deb": ..., "staging": ...}). Needs dpkg-deb, dpkg-shlibdeps (dpkg-dev), strip.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';
import { bundlePrograms, PROGRAMS, WORKERS, workerBundle } from './build.ts';
import { renderManPages } from './man.ts';
import { PACHA_VERSION } from '../packages/shared/src/version.ts';

const repo = path.resolve(import.meta.dirname, '..');
const LIB = '/usr/lib/pacha';
const MAINTAINER = 'pacha maintainers <pacha@example.org>';
const HOMEPAGE = 'https://example.org/pacha';

/** Native addons shipped in /usr/lib/pacha, by the npm package whose license covers them. */
const NATIVE_ADDONS: Record<string, string> = { 'koffi.node': 'node_modules/koffi' };

/** Debian's name for the architecture of the Node binary we ship. */
const DEB_ARCH: Record<string, string> = { x64: 'amd64', arm64: 'arm64' };

export interface PackageResult {
  deb: string;
  staging: string;
  /** Installed size in bytes (what dpkg reports in KiB). */
  installedBytes: number;
}

export async function buildPackage(opts: { out: string; log?: (line: string) => void; fast?: boolean }): Promise<PackageResult> {
  const log = opts.log ?? ((l: string) => process.stderr.write(`${l}\n`));
  const arch = DEB_ARCH[process.arch];
  if (!arch) throw new Error(`no Debian architecture for ${process.arch} (accepted: ${Object.keys(DEB_ARCH).join(', ')})`);
  for (const tool of ['dpkg-deb', 'dpkg-shlibdeps', 'strip']) requireTool(tool);

  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'pacha-deb-'));
  const root = path.join(work, 'root');
  const put = (rel: string, data: string | Buffer, mode = 0o644) => {
    const f = path.join(root, rel);
    fs.mkdirSync(path.dirname(f), { recursive: true, mode: 0o755 });
    fs.writeFileSync(f, data);
    fs.chmodSync(f, mode);
  };
  const lib = path.join(root, LIB);

  // The runtime: the same Node the project runs on (the `node` dev dependency), stripped of its
  // symbols (126 MB -> 108 MB; nothing at run time reads them).
  const nodeBin = fs.realpathSync(path.join(repo, 'node_modules/.bin/node'));
  put(`${LIB}/node`, fs.readFileSync(nodeBin), 0o755);
  execFileSync('strip', ['--strip-unneeded', path.join(lib, 'node')]);

  // The bundles, as CommonJS: Node starts them sooner than the ES modules of `npm run build`.
  const inputs = await bundlePrograms(path.join(work, 'dist'), log, 'cjs');
  for (const p of PROGRAMS) {
    put(`${LIB}/${p.outCjs}`, fs.readFileSync(path.join(work, 'dist', p.outCjs)));
    put(`${LIB}/${p.name}.cjs`, launcher(p.outCjs));
    put(`/usr/bin/${p.name}`, shellWrapper(p.name), 0o755);
  }
  for (const w of WORKERS) put(`${LIB}/${workerBundle(w.name, 'cjs')}`, fs.readFileSync(path.join(work, 'dist', workerBundle(w.name, 'cjs'))));
  // Native addons the bundles load from beside themselves (bundlePrograms copies them to dist).
  const addons = fs.readdirSync(path.join(work, 'dist')).filter((f) => f.endsWith('.node'));
  for (const a of addons) {
    if (!(a in NATIVE_ADDONS)) throw new Error(`dist/${a}: unknown native addon (name its npm package in NATIVE_ADDONS, scripts/package.ts, for the copyright file)`);
    put(`${LIB}/${a}`, fs.readFileSync(path.join(work, 'dist', a)));
  }

  // Code cache: `version` of each program compiles the whole bundle once; the cache stores the
  // result keyed on paths relative to the cache folder (portable), so it is valid once installed.
  for (const p of PROGRAMS) {
    execFileSync(path.join(root, 'usr/bin', p.name), [p.name === 'pacha' ? 'version' : '--help'], {
      env: { PATH: '/usr/bin:/bin', HOME: work },
      stdio: 'ignore',
    });
  }
  const cacheFiles = listFiles(path.join(lib, 'compile-cache'));
  if (cacheFiles.length === 0) throw new Error('the code cache was not written (node did not create compile-cache/)');
  for (const f of cacheFiles) fs.chmodSync(f, 0o644);

  // Systemd units: the source units start the bundle with a system Node; here, the launchers.
  for (const [src, name] of [['packages/agent/pacha.service', 'pacha'], ['packages/master/pacha-master.service', 'pacha-master']] as const) {
    put(`/lib/systemd/system/${name}.service`, packagedUnit(fs.readFileSync(path.join(repo, src), 'utf8'), name));
  }

  put('/etc/pacha.conf', fs.readFileSync(path.join(repo, 'packaging/pacha.conf')), 0o640);

  const date = changelogDate();
  for (const page of renderManPages(fs.readFileSync(path.join(repo, 'packaging/man.md'), 'utf8'), PACHA_VERSION, date.iso)) {
    put(`/usr/share/man/man${page.section}/${page.name}.${page.section}.gz`, gzip(page.roff));
  }

  put('/usr/share/lintian/overrides/pacha', fs.readFileSync(path.join(repo, 'packaging/deb/lintian-overrides')));
  put('/usr/share/bash-completion/completions/pacha', fs.readFileSync(path.join(repo, 'packaging/bash-completion')));
  fs.symlinkSync('pacha', path.join(root, 'usr/share/bash-completion/completions/pacha-master'));

  const doc = '/usr/share/doc/pacha';
  for (const dir of ['pacha_pre', 'pacha_post']) {
    for (const f of fs.readdirSync(path.join(repo, 'hooks-examples', dir)).sort()) {
      // Not executable here (Debian keeps /usr/share/doc free of programs); rebuilds make hooks executable.
      put(`${doc}/examples/${dir}/${f}`, fs.readFileSync(path.join(repo, 'hooks-examples', dir, f)));
    }
  }
  for (const f of fs.readdirSync(path.join(repo, 'docs')).filter((f) => f.endsWith('.md')).sort()) {
    put(`${doc}/${f}`, fs.readFileSync(path.join(repo, 'docs', f)));
  }
  put(`${doc}/README.md`, fs.readFileSync(path.join(repo, 'README.md')));
  put(`${doc}/copyright`, copyrightFile(inputs, addons));
  put(`${doc}/node.LICENSE.gz`, gzip(fs.readFileSync(nodeLicense(nodeBin))));
  put(`${doc}/changelog.gz`, gzip(fs.readFileSync(path.join(repo, 'packaging/deb/changelog'), 'utf8')));

  // Control area.
  const control = path.join(root, 'DEBIAN');
  fs.mkdirSync(control, { mode: 0o755 });
  for (const s of ['postinst', 'prerm', 'postrm']) put(`/DEBIAN/${s}`, fs.readFileSync(path.join(repo, 'packaging/deb', s)), 0o755);
  put('/DEBIAN/conffiles', '/etc/pacha.conf\n');
  const files = listFiles(root).filter((f) => !f.startsWith(control + path.sep));
  put('/DEBIAN/md5sums', files.map((f) => `${md5(f)}  ${path.relative(root, f)}\n`).join(''));
  const installedBytes = files.reduce((n, f) => n + fs.lstatSync(f).size, 0);
  put('/DEBIAN/control', controlFile({ arch, depends: shlibDepends(work, path.join(lib, 'node')), installedKiB: Math.ceil(installedBytes / 1024) }));

  fs.mkdirSync(opts.out, { recursive: true });
  const deb = path.join(opts.out, `pacha_${PACHA_VERSION}_${arch}.deb`);
  // --root-owner-group: every file root:root without fakeroot. xz is what the archive expects; it
  // takes minutes for the 108 MB of Node, so --fast (the tests) uses gzip -1 instead.
  const compression = opts.fast ? ['-Zgzip', '-z1'] : ['-Zxz'];
  execFileSync('dpkg-deb', ['--root-owner-group', ...compression, '--build', root, deb], { stdio: ['ignore', 'ignore', 'inherit'] });
  log(`built ${deb} (${(fs.statSync(deb).size / 1e6).toFixed(1)} MB, installed ${(installedBytes / 1e6).toFixed(1)} MB)`);
  return { deb, staging: root, installedBytes };
}

/**
 * /usr/bin/<program>: a shell script, so that the #! line names an interpreter every Debian host
 * has; it finds /usr/lib/pacha from its own location (an unpacked package, as in the tests, works
 * where it lies) and runs the package's own Node on the program's launcher.
 */
function shellWrapper(program: string): string {
  return [
    '#!/bin/sh',
    `# ${program}, installed by the pacha package: its own Node.js runs ${LIB}/${program}.cjs.`,
    'lib="${0%/*}/../lib/pacha"',
    `[ -x "$lib/node" ] || lib=${LIB}`,
    `exec "$lib/node" "$lib/${program}.cjs" "$@"`,
    '',
  ].join('\n');
}

/**
 * /usr/lib/pacha/<program>.cjs: turns on the code cache made at build time, then loads the bundle.
 */
function launcher(bundle: string): string {
  return [
    `// Installed by the pacha package: loads ${bundle} with the V8 code cache made when the package was built.`,
    `'use strict';`,
    `require('node:module').enableCompileCache?.({ directory: require('node:path').join(__dirname, 'compile-cache'), portable: true });`,
    `require(require('node:path').join(__dirname, ${JSON.stringify(bundle)}));`,
    '',
  ].join('\n');
}

/** A source unit with its ExecStart pointed at /usr/bin and its documentation at the man pages. */
export function packagedUnit(text: string, program: 'pacha' | 'pacha-master'): string {
  const bundleRun = /\/usr\/bin\/env node \/usr\/local\/lib\/pacha\/(pacha(?:-master)?)\.mjs/g;
  if (!bundleRun.test(text)) throw new Error(`${program}.service: no "ExecStart=/usr/bin/env node /usr/local/lib/pacha/${program}.mjs" to rewrite (update scripts/package.ts)`);
  const section = program === 'pacha' ? '1' : '8';
  const docs = program === 'pacha' ? 'daemon.md' : 'master-setup.md';
  return text
    .replace(bundleRun, '/usr/bin/$1')
    .replace(/^# Install: .*\n/m, `# Installed by the pacha package; see ${program}(${section}) and /usr/share/doc/pacha/install.md.\n`)
    .replace(/^Documentation=.*$/m, `Documentation=man:${program}(${section}) file:///usr/share/doc/pacha/${docs}`);
}

function controlFile(o: { arch: string; depends: string; installedKiB: number }): string {
  return [
    'Package: pacha',
    `Version: ${PACHA_VERSION}`,
    `Architecture: ${o.arch}`,
    `Maintainer: ${MAINTAINER}`,
    `Installed-Size: ${o.installedKiB}`,
    `Depends: ${o.depends}, adduser`,
    // Deflates snapshots at about twice zlib's speed (shared/src/git/deflate.ts); zlib without it.
    'Recommends: libdeflate0',
    'Section: admin',
    'Priority: optional',
    `Homepage: ${HOMEPAGE}`,
    'Description: snapshot a host\'s configuration over SFTP and rebuild the host from it',
    ' pacha keeps every Linux server you manage rebuildable. The agent (pacha)',
    ' watches the directories and files you name and turns every change into a git',
    ' commit of their contents, owners, modes, extended attributes, package manifest',
    ' and accounts, and pushes it over SFTP to a master. The embedded master',
    ' (pacha-master) keeps one append-only history per host. pacha rebuild puts a',
    ' lost host back: hooks, accounts, packages, then every file with its metadata.',
    ' .',
    ' This package carries its own Node.js runtime under /usr/lib/pacha.',
    '',
  ].join('\n');
}

/** The libraries the Node binary links against, as dpkg-shlibdeps computes them on this machine. */
function shlibDepends(work: string, binary: string): string {
  const dir = path.join(work, 'shlibdeps');
  fs.mkdirSync(path.join(dir, 'debian'), { recursive: true });
  fs.writeFileSync(path.join(dir, 'debian/control'), 'Source: pacha\n\nPackage: pacha\nArchitecture: any\n');
  const out = execFileSync('dpkg-shlibdeps', ['-O', '-e', binary], { cwd: dir, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
  const m = /^shlibs:Depends=(.+)$/m.exec(out);
  if (!m) throw new Error(`dpkg-shlibdeps printed no shlibs:Depends: ${out}`);
  return m[1].trim();
}

/** The npm packages a bundle was made of: node_modules/<name> or node_modules/@scope/name. */
export function bundledPackages(inputs: string[]): string[] {
  const names = new Set<string>();
  for (const f of inputs) {
    const i = f.lastIndexOf('node_modules/');
    if (i < 0) continue;
    const parts = f.slice(i + 'node_modules/'.length).split('/');
    names.add(`${f.slice(0, i)}node_modules/${parts[0].startsWith('@') ? `${parts[0]}/${parts[1]}` : parts[0]}`);
  }
  return [...names].sort();
}

function copyrightFile(inputs: string[], addons: string[]): string {
  const indent = (text: string) =>
    text
      .replace(/\r/g, '')
      .trimEnd()
      .split('\n')
      .map((l) => (l.trim() === '' ? ' .' : ` ${l}`))
      .join('\n');
  const out = [
    'Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/',
    'Upstream-Name: pacha',
    `Source: ${HOMEPAGE}`,
    '',
    'Files: *',
    `Copyright: ${MAINTAINER}`,
    'License: pacha',
    ' The pacha maintainers have not chosen a license for pacha yet; until they do, all',
    ' rights are reserved by them.',
    '',
    'Files: usr/lib/pacha/node',
    'Copyright: Node.js contributors, and the authors of the software it includes',
    'License: Node.js',
    '',
  ];
  const licenses = new Map<string, string>();
  const stanzas: Array<[files: string, dir: string]> = [
    ...bundledPackages(inputs).map((dir): [string, string] => [PROGRAMS.map((p) => `usr/lib/pacha/${p.outCjs}`).join(' '), dir]),
    ...addons.map((a): [string, string] => [`usr/lib/pacha/${a}`, NATIVE_ADDONS[a]]),
  ];
  for (const [files, dir] of stanzas) {
    const pj = JSON.parse(fs.readFileSync(path.join(repo, dir, 'package.json'), 'utf8')) as { name: string; version: string; license?: string; author?: string | { name?: string } };
    const licenseFile = fs.readdirSync(path.join(repo, dir)).find((f) => /^(licen[cs]e|copying)(\.|$)/i.test(f));
    // Debian ships the Apache License's text once, in common-licenses: refer to it (lintian insists).
    const text =
      pj.license === 'Apache-2.0'
        ? 'On Debian systems, the complete text of the Apache License 2.0 is in /usr/share/common-licenses/Apache-2.0.'
        : licenseFile
          ? fs.readFileSync(path.join(repo, dir, licenseFile), 'utf8')
          : `${pj.license ?? 'unknown'} (no license file in the npm package)`;
    const author = typeof pj.author === 'string' ? pj.author : (pj.author?.name ?? 'its authors');
    const id = `${pj.name}-${pj.version}`;
    licenses.set(id, text);
    out.push(
      `Files: ${files}`,
      `Comment: from the npm package ${pj.name} ${pj.version} (${pj.license ?? 'no license field'})`,
      `Copyright: ${author.replace(/\n/g, ' ')}`,
      `License: ${id}`,
      '',
    );
  }
  // Node's LICENSE holds the licenses of everything it includes (OpenSSL's Apache License among
  // them), 150 KB: it is shipped whole next to this file.
  out.push(
    'License: Node.js',
    indent(
      'Node.js is licensed under the MIT license; it includes software under other licenses (OpenSSL,\n' +
        'ICU, V8, libuv, zlib and more). The complete text of all of them, as Node.js distributes it,\n' +
        'is in /usr/share/doc/pacha/node.LICENSE.gz.',
    ),
    '',
  );
  for (const [id, text] of licenses) out.push(`License: ${id}`, indent(text), '');
  return out.join('\n');
}

/** Node's LICENSE: in the npm package that holds the binary (node-linux-<arch>, under `node`). */
function nodeLicense(nodeBin: string): string {
  const candidates = [
    path.join(path.dirname(nodeBin), '..', 'LICENSE'),
    path.join(repo, 'node_modules/node/node_modules', `node-linux-${process.arch}`, 'LICENSE'),
    path.join(repo, 'node_modules', `node-linux-${process.arch}`, 'LICENSE'),
  ];
  const found = candidates.find((f) => fs.existsSync(f));
  if (!found) throw new Error(`Node.js's LICENSE not found (looked at ${candidates.join(', ')})`);
  return found;
}

function changelogDate(): { iso: string } {
  const text = fs.readFileSync(path.join(repo, 'packaging/deb/changelog'), 'utf8');
  const m = /^ -- .+>  (.+)$/m.exec(text);
  if (!m) throw new Error('packaging/deb/changelog: no " -- NAME <EMAIL>  DATE" line');
  const first = /^pacha \(([^)]+)\)/.exec(text);
  if (!first || first[1] !== PACHA_VERSION) {
    throw new Error(`packaging/deb/changelog: its newest entry is ${first?.[1] ?? '(none)'}, the version is ${PACHA_VERSION}: add an entry for ${PACHA_VERSION}`);
  }
  return { iso: new Date(m[1]).toISOString().slice(0, 10) };
}

function gzip(text: string | Buffer): Buffer {
  // No name or time in the header (gzip -n): the same input makes the same package.
  return zlib.gzipSync(text, { level: 9 });
}

function md5(file: string): string {
  return execFileSync('md5sum', [file], { encoding: 'utf8' }).split(' ')[0];
}

function listFiles(dir: string): string[] {
  if (!fs.existsSync(dir)) return [];
  const out: string[] = [];
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const f = path.join(dir, e.name);
    if (e.isDirectory()) out.push(...listFiles(f));
    else if (e.isFile()) out.push(f);
  }
  return out.sort();
}

function requireTool(tool: string): void {
  try {
    execFileSync('sh', ['-c', `command -v ${tool}`], { stdio: 'ignore' });
  } catch {
    throw new Error(`${tool} is missing (apt-get install dpkg-dev binutils; scripts/setup.sh --test installs it)`);
  }
}

if (import.meta.main) {
  const args = process.argv.slice(2);
  const outArg = args.indexOf('--out');
  const out = outArg >= 0 ? path.resolve(args[outArg + 1]) : repo;
  try {
    const r = await buildPackage({ out, fast: args.includes('--fast') });
    if (!args.includes('--keep-staging')) fs.rmSync(path.dirname(r.staging), { recursive: true, force: true });
    if (args.includes('--json')) process.stdout.write(`${JSON.stringify({ deb: r.deb, staging: args.includes('--keep-staging') ? r.staging : null, installedBytes: r.installedBytes })}\n`);
    else process.stdout.write(`${r.deb}\n`);
  } catch (e) {
    process.stderr.write(`npm run package: ${(e as Error).message}\n`);
    process.exitCode = 1;
  }
}
