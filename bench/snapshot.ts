// Snapshot engine against native git, side by side in one run (medians):
//  (a) first snapshot of 10,000 files of 1-8 KiB in 200 directories vs `git add -A && git commit`
//  (b) re-snapshot after one file changed in a 100,000-file tree vs the same with native git;
//      a full reconcile scan with nothing changed vs rsync's no-change re-sync of the same tree
//  (c) peak memory (and time) snapshotting one 1 GiB file
// Both sides run as processes from a warm page cache; generated data lives under /tmp and is removed.
import fs from 'node:fs';
import os from 'node:os';
import v8 from 'node:v8';
import vm from 'node:vm';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { PACHA_BIN } from '@pacha/test-support/cli';
import { fmtMs, median, runProc, sh } from './lib/measure.ts';
import { generateBigFile, generateTree, removeTree, tempDir } from './lib/tree.ts';
import { markdownTable, saveResult } from './lib/table.ts';
import { loadConfig } from '@pacha/shared/config';
import { silentLogger } from '@pacha/shared/log';
import { statePaths } from '@pacha/shared/state';
import { takeSnapshot } from '@pacha/shared/snapshot/engine';

const benchDir = path.dirname(fileURLToPath(import.meta.url));
const RUNS = Number(process.env.PACHA_BENCH_RUNS ?? 5);

interface Host {
  root: string;
  env: NodeJS.ProcessEnv;
  stateDir: string;
}

/** A fake host under root watching /data; the tree to snapshot is root/data. */
function makeHost(root: string): Host {
  fs.mkdirSync(path.join(root, 'etc'), { recursive: true });
  fs.writeFileSync(path.join(root, 'etc/pacha.conf'), '[DEFAULT]\npacha.hostname = bench\npacha.watch = /data\npacha.max_file_size = 4GiB\n');
  fs.copyFileSync('/etc/passwd', path.join(root, 'etc/passwd'));
  fs.copyFileSync('/etc/group', path.join(root, 'etc/group'));
  return { root, env: { PACHA_ROOT_DIR: root, PACHA_CONFIG: '' }, stateDir: path.join(root, 'var/lib/pacha') };
}

const pacha = (h: Host, peakMemory = false) => runProc(process.execPath, [PACHA_BIN, 'snapshot', '--json'], { env: h.env, peakMemory });
const gitEnv = { GIT_AUTHOR_NAME: 'b', GIT_AUTHOR_EMAIL: 'b@b', GIT_COMMITTER_NAME: 'b', GIT_COMMITTER_EMAIL: 'b@b' };
const gitCommit = (dir: string) => runProc('sh', ['-c', 'git add -A && git commit -q -m snapshot'], { cwd: dir, env: gitEnv });

function touchOne(file: string, i: number): void {
  fs.appendFileSync(file, `# change ${i}\n`);
}

async function first(rows: string[][]): Promise<void> {
  const base = tempDir('first');
  try {
    const h = makeHost(path.join(base, 'host'));
    generateTree(path.join(h.root, 'data'), { files: 10_000, dirs: 200, minSize: 1024, maxSize: 8192 });
    const gdir = path.join(base, 'git');
    sh(`cp -a ${JSON.stringify(path.join(h.root, 'data'))} ${JSON.stringify(gdir)}`);
    sh('sync');
    const p: number[] = [];
    const g: number[] = [];
    for (let i = 0; i < RUNS; i++) {
      fs.rmSync(h.stateDir, { recursive: true, force: true });
      p.push((await pacha(h)).ms);
      fs.rmSync(path.join(gdir, '.git'), { recursive: true, force: true });
      sh('git init -q && git config gc.auto 0', gdir); // no detached gc --auto into pacha's next timed run
      g.push((await gitCommit(gdir)).ms);
    }
    rows.push(['(a) first snapshot, 10,000 files of 1-8 KiB in 200 dirs', fmtMs(median(p)), fmtMs(median(g)), (median(p) / median(g)).toFixed(2), '<= 1.00']);
  } finally {
    removeTree(base);
  }
}

async function resnap(rows: string[][]): Promise<void> {
  const base = tempDir('resnap');
  try {
    const h = makeHost(path.join(base, 'host'));
    generateTree(path.join(h.root, 'data'), { files: 100_000, dirs: 2000, minSize: 200, maxSize: 2048 });
    const gdir = path.join(base, 'git');
    sh(`cp -a ${JSON.stringify(path.join(h.root, 'data'))} ${JSON.stringify(gdir)}`);
    sh('git init -q && git config gc.auto 0', gdir);
    await gitCommit(gdir);
    const firstBig = await pacha(h, true);
    // A second pass so both sides start from a settled cache (racily-clean entries re-checked).
    await pacha(h);
    // And a settled disk: the trees just written (some 400 MB) would otherwise be flushed during
    // the timed runs, stalling whichever side calls fsync (pacha does, for its packs and ref;
    // git add and commit do not by default).
    sh('sync');
    const p: number[] = [];
    const g: number[] = [];
    const d: number[] = [];
    const config = loadConfig({ env: { ...process.env, ...h.env } });
    const env = { config, state: statePaths(config.stateDir), log: silentLogger };
    // Memory of the daemon's way, in this process: what a snapshot leaves behind (after a full
    // collection) and the most it had in use when it returned (heap + buffers, before one).
    v8.setFlagsFromString('--expose-gc');
    const gc = vm.runInNewContext('gc') as () => void;
    const inUse = () => process.memoryUsage().heapUsed + process.memoryUsage().arrayBuffers;
    gc();
    const before = inUse();
    let atEnd = 0;
    let retained = 0;
    let rss = 0;
    // Nothing changed: the full reconcile scan against rsync re-syncing the tree to an up-to-date
    // copy (local, no ssh: rsync's cheapest case), alternating.
    const rcopy = path.join(base, 'rsync-copy');
    sh(`rsync -a ${JSON.stringify(path.join(h.root, 'data'))}/ ${JSON.stringify(rcopy)}/`);
    const n0: number[] = [];
    const r0: number[] = [];
    for (let i = 0; i < RUNS; i++) {
      const res = await pacha(h);
      if ((JSON.parse(res.stdout) as { commit: string | null }).commit !== null) throw new Error('a scan with nothing changed committed');
      n0.push(res.ms);
      r0.push((await runProc('rsync', ['-a', `${path.join(h.root, 'data')}/`, `${rcopy}/`])).ms);
    }
    rows.push(['(b0) full reconcile scan, 100,000 files, nothing changed (`pacha snapshot`) vs `rsync -a` to an up-to-date copy', fmtMs(median(n0)), fmtMs(median(r0)) + ' (rsync)', (median(n0) / median(r0)).toFixed(2), '<= 1.00 x rsync']);
    const routes = new Set<string>();
    for (let i = 0; i < RUNS; i++) {
      touchOne(path.join(h.root, 'data/d0042/f000042.conf'), i);
      const pr = await pacha(h);
      p.push(pr.ms);
      routes.add((JSON.parse(pr.stdout) as { route: string }).route);
      touchOne(path.join(gdir, 'd0042/f000042.conf'), i);
      g.push((await gitCommit(gdir)).ms);
      // The daemon's way: the watcher names the changed path, the rest comes from the stat cache.
      touchOne(path.join(h.root, 'data/d0042/f000042.conf'), i + 100);
      const t = performance.now();
      const r = await takeSnapshot(env, { dirty: ['/data/d0042/f000042.conf'] });
      d.push(performance.now() - t);
      if (r.commit === null) throw new Error('dirty snapshot saw no change');
      atEnd = Math.max(atEnd, inUse() - before);
      rss = Math.max(rss, process.memoryUsage().rss);
      gc();
      retained = Math.max(retained, inUse() - before);
    }
    rows.push([
      `(b) re-snapshot, 1 file changed in 100,000 files (\`pacha snapshot\`, a full scan: route ${[...routes].join('/')})`,
      fmtMs(median(p)),
      fmtMs(median(g)),
      (median(p) / median(g)).toFixed(2),
      'none (retired)',
    ]);
    // A name added: its directory is listed again.
    const pa: number[] = [];
    const ga: number[] = [];
    const fullRoutes = new Set<string>();
    for (let i = 0; i < RUNS; i++) {
      fs.writeFileSync(path.join(h.root, `data/d0042/added-${i}.conf`), `added ${i}\n`);
      const r = await pacha(h);
      pa.push(r.ms);
      fullRoutes.add((JSON.parse(r.stdout) as { route: string }).route);
      fs.writeFileSync(path.join(gdir, `d0042/added-${i}.conf`), `added ${i}\n`);
      ga.push((await gitCommit(gdir)).ms);
    }
    rows.push([`(b-add) re-snapshot, 1 file added in 100,000 files (route ${[...fullRoutes].join('/')})`, fmtMs(median(pa)), fmtMs(median(ga)), (median(pa) / median(ga)).toFixed(2), '']);
    rows.push(["(b') same change, daemon path (watcher's dirty path, in-process)", fmtMs(median(d)), fmtMs(median(g)), (median(d) / median(g)).toFixed(2), '']);
    const mib = (n: number) => `${(n / 2 ** 20).toFixed(0)} MiB`;
    rows.push(["(a') peak RSS, first snapshot of those 100,000 files (`pacha snapshot`)", `${mib((firstBig.maxRssKiB ?? NaN) * 1024)} (${fmtMs(firstBig.ms)})`, '', '', '']);
    rows.push([
      "(b'') memory of (b'): heap+buffers kept between snapshots / in use at return / process RSS",
      `${mib(retained)} / ${mib(atEnd)} / ${mib(rss)}`,
      '',
      '',
      'engine < 60 MiB',
    ]);
  } finally {
    removeTree(base);
  }
}

async function bigFile(rows: string[][]): Promise<void> {
  const base = tempDir('big');
  try {
    const h = makeHost(path.join(base, 'host'));
    fs.mkdirSync(path.join(h.root, 'data'), { recursive: true });
    generateBigFile(path.join(h.root, 'data/big.img'), 1024 ** 3);
    const r = await pacha(h, true);
    const mib = (r.maxRssKiB ?? NaN) / 1024;
    rows.push(['(c) peak RSS, one 1 GiB file', `${mib.toFixed(0)} MiB (${fmtMs(r.ms)})`, '', '', '< 150 MiB']);
  } finally {
    removeTree(base);
  }
}

export async function run(args: string[] = []): Promise<string> {
  const only = args.filter((a) => /^[abc]$/.test(a));
  const rows: string[][] = [];
  const want = (k: string) => only.length === 0 || only.includes(k);
  if (want('a')) await first(rows);
  if (want('b')) await resnap(rows);
  if (want('c')) await bigFile(rows);
  const table = markdownTable(['case', 'pacha', 'native git', 'ratio', 'target'], rows);
  const notes = [
    '',
    'Both sides are processes started from a warm page cache, after `sync`. A full scan (docs/snapshot-format.md,',
    '*The scan*) gives every path one `lstat` compared with the stat cache and lists a directory again only when',
    'its own signature changed; (b0) compares it with rsync doing the same job between two local trees.',
  ].join('\n');
  const text = `# bench: snapshot\n\n${new Date().toISOString()}, ${os.cpus().length} CPUs, node ${process.version}, median of ${RUNS} runs (processes, warm cache)\n\n${table}${want('b') ? notes + '\n' : ''}`;
  process.stdout.write(text);
  if (only.length === 0) process.stdout.write(`written to ${saveResult(benchDir, 'snapshot', text)}\n`);
  return text;
}
