// Extended attributes: what recording and restoring them costs. 10,000 files of 1-8 KiB in
// 100 directories, a first `pacha snapshot` (empty state dir) and a `pacha rebuild` into an empty
// root (local folder master, so only pacha's own work is timed), for
//   none   no attribute set (what most trees are): the cost of looking
//   with   1,000 files with a user.* attribute, 100 with an access ACL, 50 with a capability,
//          10 directories with a default ACL
// and, when PACHA_BENCH_BASELINE names another checkout of pacha (one without xattr support,
// `git worktree add /tmp/base <commit>` and `npm ci` there), the same "none" runs with that
// checkout's pacha, alternating with this one's in the same run: the target is at most 5% more.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { PACHA_BIN } from '@pacha/test-support/cli';
import { fmtMs, median, runProc } from './lib/measure.ts';
import { markdownTable, saveResult } from './lib/table.ts';
import { generateTree, removeTree, tempDir } from './lib/tree.ts';

const benchDir = path.dirname(fileURLToPath(import.meta.url));
const RUNS = Number(process.env.PACHA_BENCH_RUNS ?? 5);
const FILES = 10_000;
const DIRS = 100;

function hostConfig(root: string, hostsPath: string, name: string): NodeJS.ProcessEnv {
  fs.mkdirSync(path.join(root, 'etc'), { recursive: true });
  fs.copyFileSync('/etc/passwd', path.join(root, 'etc/passwd'));
  fs.copyFileSync('/etc/group', path.join(root, 'etc/group'));
  fs.writeFileSync(
    path.join(root, 'etc/pacha.conf'),
    ['[DEFAULT]', `pacha.hostname = ${name}`, 'pacha.host = file://', `pacha.hosts.path = ${hostsPath}`, 'pacha.watch = /data', ''].join('\n'),
  );
  return { PACHA_ROOT_DIR: root, PACHA_CONFIG: '' };
}

/** setfattr --restore and setfacl in a few processes (a process per file would take minutes). */
function addXattrs(data: string): void {
  const dirs = fs.readdirSync(data).sort();
  const files = dirs.flatMap((d) => fs.readdirSync(path.join(data, d)).sort().map((f) => path.join(data, d, f)));
  const dump = files
    .filter((_f, i) => i % 10 === 0)
    .map((f, i) => `# file: ${f}\nuser.origin="bench ${i}"\n`)
    .join('\n');
  const dumpFile = path.join(os.tmpdir(), `pacha-bench-xattrs-${process.pid}.txt`);
  fs.writeFileSync(dumpFile, dump);
  execFileSync('setfattr', ['--restore', dumpFile]);
  fs.rmSync(dumpFile);
  execFileSync('setfacl', ['-m', 'u:65534:r,g:65534:rw', ...files.filter((_f, i) => i % 100 === 1)]);
  execFileSync('setcap', files.filter((_f, i) => i % 200 === 2).flatMap((f) => ['cap_net_raw+ep', f]));
  execFileSync('setfacl', ['-d', '-m', 'g:65534:rwx', ...dirs.filter((_d, i) => i % 10 === 0).map((d) => path.join(data, d))]);
}

export async function run(): Promise<void> {
  const base = tempDir('xattrs');
  const baseline = process.env.PACHA_BENCH_BASELINE ? path.join(process.env.PACHA_BENCH_BASELINE, 'packages/agent/bin/pacha.js') : undefined;
  try {
    const trees: Record<'none' | 'with', string> = { none: path.join(base, 'none'), with: path.join(base, 'with') };
    for (const t of Object.values(trees)) generateTree(path.join(t, 'data'), { files: FILES, dirs: DIRS, minSize: 1024, maxSize: 8192 });
    addXattrs(path.join(trees.with, 'data'));
    process.stderr.write(`generated 2 x ${FILES} files${baseline ? `; baseline ${baseline}` : ''}\n`);

    type Case = { name: string; bin: string; tree: 'none' | 'with'; snap: number[]; rebuild: number[]; snapCpu: number[]; rebuildCpu: number[] };
    const newCase = (name: string, bin: string, tree: 'none' | 'with'): Case => ({ name, bin, tree, snap: [], rebuild: [], snapCpu: [], rebuildCpu: [] });
    const cases: Case[] = [newCase('none', PACHA_BIN, 'none'), newCase('with', PACHA_BIN, 'with')];
    if (baseline) cases.push(newCase('baseline none', baseline, 'none'));
    // Wall time and CPU time (user + system) of each process: on a shared, busy machine the CPU
    // time is the steadier measure of the work a change adds.
    const timed = (c: Case, args: string[], env: NodeJS.ProcessEnv) => runProc(process.execPath, [c.bin, ...args], { env, peakMemory: true });

    for (let i = 0; i < RUNS; i++) {
      for (let k = 0; k < cases.length; k++) {
        const c = cases[(i + k) % cases.length];
        const hosts = path.join(base, `hosts-${i}-${k}`);
        const src = trees[c.tree];
        fs.rmSync(path.join(src, 'var'), { recursive: true, force: true });
        fs.mkdirSync(hosts);
        const env = hostConfig(src, hosts, 'bench');
        await runProc('sync', []);
        const snap = await timed(c, ['snapshot'], env);
        c.snap.push(snap.ms);
        c.snapCpu.push(snap.cpuMs ?? NaN);
        await runProc(process.execPath, [c.bin, 'push'], { env });
        const dst = path.join(base, `dst-${i}-${k}`);
        const denv = hostConfig(dst, hosts, 'bench');
        await runProc('sync', []);
        const rb = await timed(c, ['rebuild', 'bench', '--yes'], denv);
        c.rebuild.push(rb.ms);
        c.rebuildCpu.push(rb.cpuMs ?? NaN);
        removeTree(dst);
        removeTree(hosts);
      }
      process.stderr.write(`run ${i + 1}/${RUNS}: ${cases.map((c) => `${c.name} ${fmtMs(c.snap[i])} (cpu ${fmtMs(c.snapCpu[i])})/${fmtMs(c.rebuild[i])} (cpu ${fmtMs(c.rebuildCpu[i])})`).join(', ')}\n`);
    }
    const ref = cases.find((c) => c.name === (baseline ? 'baseline none' : 'none'))!;
    const label = (c: Case) =>
      c.name === 'none' ? 'no attribute set' : c.name === 'with' ? '1,160 paths with attributes (user.*, ACLs, capabilities, default ACLs)' : 'no attribute set, baseline (no xattr support)';
    const ratio = (a: number[], b: number[]) => (median(a) / median(b)).toFixed(3);
    const rows = cases.map((c) => [
      label(c),
      fmtMs(median(c.snap)),
      ratio(c.snap, ref.snap),
      fmtMs(median(c.snapCpu)),
      ratio(c.snapCpu, ref.snapCpu),
      fmtMs(median(c.rebuild)),
      ratio(c.rebuild, ref.rebuild),
      fmtMs(median(c.rebuildCpu)),
      ratio(c.rebuildCpu, ref.rebuildCpu),
    ]);
    const table = markdownTable(
      ['10,000 files of 1-8 KiB, 100 dirs', 'first snapshot', `/ ${ref.name}`, 'its CPU time', `/ ${ref.name}`, 'rebuild', `/ ${ref.name}`, 'its CPU time', `/ ${ref.name}`],
      rows,
    );
    const load = os.loadavg().map((x) => x.toFixed(1)).join(' ');
    const text =
      `# Extended attributes benchmark\n\n${new Date().toISOString()}, ${os.cpus().length} CPUs, load average at the end ${load}; ` +
      `${RUNS} runs of each case, alternating (the order rotates from run to run), medians; local folder master. ` +
      `Target: with no attribute set, at most 5% over a pacha without xattr support.\n\n${table}\n`;
    process.stdout.write(text);
    process.stderr.write(`saved ${saveResult(benchDir, 'xattrs', text)}\n`);
  } finally {
    removeTree(base);
  }
}
