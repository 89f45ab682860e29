// `npm run bench -- packages`: what recording the package manifest costs. Reading and parsing
// this machine's /var/lib/dpkg/status (plus apt's extended_states) and a generated one of 2,000
// packages (target: under 50 ms), the first read in a fresh process (what `pacha snapshot`
// pays) and the cached read of an unchanged database (what each daemon snapshot pays). Then the
// daemon's snapshot latency (in-process, the watcher's dirty path, one changed file in a tree of
// BENCH_PACKAGES_FILES files, default 100,000) on a host with that 2,000-package database,
// unchanged or changed before each snapshot, next to the same tree on a host without one.
import fs from 'node:fs';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { spawnSync } from 'node:child_process';
import { encodePackages } from '@pacha/shared/host/packages-file';
import { parseDpkgStatus, parseExtendedStates, readPackageManifest } from '@pacha/shared/host/packages';
import { generatePackages, writeDpkgDatabase } from '@pacha/test-support/dpkg-fixture';
import { median } from './lib/measure.ts';
import { markdownTable, saveResult } from './lib/table.ts';
import { generateTree, removeTree, tempDir } from './lib/tree.ts';
import { loadConfig } from '@pacha/shared/config';
import { createLogger } from '@pacha/shared/log';
import { statePaths } from '@pacha/shared/state';
import { takeSnapshot } from '@pacha/shared/snapshot/engine';

const RUNS = Number(process.env.PACHA_BENCH_RUNS ?? 21);
const FILES = Number(process.env.BENCH_PACKAGES_FILES ?? 100_000);
const here = import.meta.dirname;

/** Read both files and build the manifest text, as a snapshot does on a changed database. */
function readAndEncode(root: string): number {
  const t = performance.now();
  const st = path.join(root, 'var/lib/dpkg/status');
  const ext = path.join(root, 'var/lib/apt/extended_states');
  const marks = fs.existsSync(ext) ? parseExtendedStates(fs.readFileSync(ext, 'latin1')) : new Map();
  encodePackages({ manager: 'dpkg', packages: parseDpkgStatus(fs.readFileSync(st, 'latin1'), marks) });
  return performance.now() - t;
}

/**
 * The first read in a new process (no JIT warm-up), as `pacha snapshot` pays it: wall time, and
 * the process's CPU time for it (less disturbed by other load on a shared machine).
 */
function freshProcess(root: string): { wall: number; cpu: number } {
  const script = `import { readPackageManifest } from ${JSON.stringify(path.join(here, '../packages/shared/src/host/packages.ts'))};` +
    `const c = process.cpuUsage(); const t = performance.now(); readPackageManifest(${JSON.stringify(root)});` +
    `const w = performance.now() - t; const u = process.cpuUsage(c); console.log(w, (u.user + u.system) / 1000);`;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(r.stderr);
  const [wall, cpu] = r.stdout.trim().split(' ').map(Number);
  return { wall, cpu };
}

export async function run(): Promise<void> {
  const gen = tempDir('packages');
  try {
    writeDpkgDatabase(gen, generatePackages(2000));
    const cases: { label: string; root: string }[] = [];
    if (fs.existsSync('/var/lib/dpkg/status')) cases.push({ label: `this machine (${readPackageManifest('/').manifest?.packages.length} packages, ${(fs.statSync('/var/lib/dpkg/status').size / 1024).toFixed(0)} KiB)`, root: '/' });
    cases.push({ label: `generated, 2,000 packages (${(fs.statSync(path.join(gen, 'var/lib/dpkg/status')).size / 1024).toFixed(0)} KiB)`, root: gen });
    const times = new Map<string, { warm: number[]; fresh: number[]; freshCpu: number[]; cached: number[] }>();
    for (const c of cases) times.set(c.label, { warm: [], fresh: [], freshCpu: [], cached: [] });
    // Alternating between the cases, run by run: the machine is shared, load moves.
    for (let i = 0; i < RUNS; i++) {
      for (const c of cases) {
        const t = times.get(c.label)!;
        t.warm.push(readAndEncode(c.root));
        if (i < 7) {
          const f = freshProcess(c.root);
          t.fresh.push(f.wall);
          t.freshCpu.push(f.cpu);
        }
        readPackageManifest(c.root);
        const s = performance.now();
        readPackageManifest(c.root);
        t.cached.push(performance.now() - s);
      }
    }
    const f = (v: number) => `${v < 1 ? v.toFixed(2) : v.toFixed(1)} ms`;
    const rows = cases.map((c) => {
      const t = times.get(c.label)!;
      return [c.label, `${f(median(t.fresh))} (CPU ${f(median(t.freshCpu))})`, f(median(t.warm)), f(median(t.cached)), '< 50 ms'];
    });
    const table = markdownTable(['dpkg database', 'first read in a new process: wall (CPU)', 'read again (changed database)', 'unchanged database (cache: 2 stat calls)', 'target'], rows);
    const latency = await daemonLatency();
    const text = `# bench: packages\n\n${new Date().toISOString()}, medians of ${RUNS} runs (7 for the new processes), cases alternating\n\n${table}\n` +
      'Reading means: read /var/lib/dpkg/status and /var/lib/apt/extended_states, parse them, and build the\n' +
      '`.pacha/packages` text. An unchanged database (same size, mtime and inode of both files) costs a stat per file.\n\n' +
      latency;
    process.stdout.write(text);
    saveResult(here, 'packages', text);
  } finally {
    fs.rmSync(gen, { recursive: true, force: true });
  }
}

/** The daemon's way (takeSnapshot with the watcher's dirty path, in-process), three hosts on one tree. */
async function daemonLatency(): Promise<string> {
  const base = tempDir('packages-daemon');
  try {
    const hosts = ['unchanged', 'changed', 'none'].map((name) => {
      const root = path.join(base, name);
      fs.mkdirSync(path.join(root, 'etc'), { recursive: true });
      fs.writeFileSync(path.join(root, 'etc/pacha.conf'), '[DEFAULT]\npacha.hostname = bench\npacha.watch = /data\n');
      fs.copyFileSync('/etc/passwd', path.join(root, 'etc/passwd'));
      fs.copyFileSync('/etc/group', path.join(root, 'etc/group'));
      return { name, root };
    });
    process.stderr.write(`generating ${FILES} files...\n`);
    const dirs = Math.max(1, Math.round(FILES / 50));
    generateTree(path.join(hosts[0].root, 'data'), { files: FILES, dirs, minSize: 200, maxSize: 2048 });
    // The same tree for the other two hosts: hard links (one inode per file, so one edit changes all three).
    for (const h of hosts.slice(1)) spawnSync('cp', ['-al', path.join(hosts[0].root, 'data'), path.join(h.root, 'data')]);
    const pkgs = generatePackages(2000);
    writeDpkgDatabase(hosts[0].root, pkgs);
    writeDpkgDatabase(hosts[1].root, pkgs);
    const log = createLogger({ quiet: true });
    const envs = hosts.map((h) => {
      const config = loadConfig({ env: { PACHA_ROOT_DIR: h.root, PACHA_CONFIG: '' } });
      return { config, state: statePaths(config.stateDir), log };
    });
    for (const env of envs) {
      fs.mkdirSync(env.state.dir, { recursive: true });
      await takeSnapshot(env, {});
    }
    const rel = `/data/d${String(42 % dirs).padStart(4, '0')}/f000042.conf`;
    const file = path.join(hosts[0].root, rel);
    const ms = new Map<string, number[]>(hosts.map((h) => [h.name, []]));
    for (let i = 0; i < RUNS; i++) {
      for (let k = 0; k < hosts.length; k++) {
        fs.appendFileSync(file, `# change ${i} ${k}\n`);
        if (hosts[k].name === 'changed') {
          pkgs[5].version = `9.${i}-1`;
          writeDpkgDatabase(hosts[k].root, pkgs);
        }
        const t = performance.now();
        const r = await takeSnapshot(envs[k], { dirty: [rel] });
        ms.get(hosts[k].name)!.push(performance.now() - t);
        if (r.commit === null) throw new Error('a dirty snapshot saw no change');
      }
    }
    const m = (n: string) => median(ms.get(n)!);
    const rows = [
      ['2,000 packages, database unchanged', `${m('unchanged').toFixed(0)} ms`, (m('unchanged') / m('none')).toFixed(2)],
      ['2,000 packages, database changed before each snapshot (one upgrade)', `${m('changed').toFixed(0)} ms`, (m('changed') / m('none')).toFixed(2)],
      ['no package database', `${m('none').toFixed(0)} ms`, '1.00'],
    ];
    return `Daemon snapshot latency: one changed file in ${FILES.toLocaleString('en')} files, the watcher's dirty path, in-process, median of ${RUNS}, the three hosts alternating on one tree (hard links)\n\n` +
      markdownTable(['host', 'snapshot', 'vs no package database'], rows);
  } finally {
    removeTree(base);
  }
}
