// Real trees, side by side in one run with rsync, restic and native git (medians):
// a copy of this machine's /etc, a copy of its /usr/share (large and already-compressed files),
// and the generated 10,000 files of 1-8 KiB. Per tree:
//   first snapshot + push    `pacha snapshot && pacha push` to an OpenSSH sshd on loopback
//                            vs `rsync -a` to the same sshd, `restic backup` to a repository on it
//                            over sftp, and `git add -A && git commit` (local, no transfer)
//   rebuild                  `pacha rebuild HOST --yes` into an empty host vs `rsync -a` pulling
//                            the tree from the sshd and `restic restore latest`
// The tools take turns within each run (the order rotates), each after an untimed `sync`, so
// all see the same machine load. Each series (first snapshot + push, rebuild) starts on a disk
// that looks fresh to every tool alike (freshDisk in lib/tree.ts: on this ext4 without a
// journal, inodes deleted in the last minutes slow down every file created after them in their
// block group): every destination in a little-used block group (`chattr +T` on the folder that
// holds them), `sync`, the clean page and buffer cache dropped, then one untimed round of every
// tool to fill the caches again; no destination is deleted before the series ends. `npm run bench -- trees tree=etc` (or usr-share, generated) runs one tree.
// PACHA_BENCH_BASELINE=/other/checkout/packages/agent/bin/pacha.js adds that pacha to the rotation
// of the first snapshot + push and of the rebuild (an A/B of two versions in the same run);
// PACHA_BENCH_REBUILD_ONLY=1 times the rebuild alone (after one untimed snapshot + push),
// PACHA_BENCH_FIRST_ONLY=1 the first snapshot + push alone.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { PACHA_BIN } from '@pacha/test-support/cli';
import { startSshd } from '@pacha/test-support/sshd';
import { fmtMs, median, runProc, sh } from './lib/measure.ts';
import { writeBenchHost } from './lib/host.ts';
import { markdownTable, saveResult } from './lib/table.ts';
import { freshDisk, generateTree, removeTree, tempDir } from './lib/tree.ts';

const benchDir = path.dirname(fileURLToPath(import.meta.url));
const RUNS = Number(process.env.PACHA_BENCH_RUNS ?? 3);
const HOST = 'treehost';
const BASELINE = process.env.PACHA_BENCH_BASELINE;
const REBUILD_ONLY = process.env.PACHA_BENCH_REBUILD_ONLY === '1';
const FIRST_ONLY = process.env.PACHA_BENCH_FIRST_ONLY === '1';
const gitEnv = { GIT_AUTHOR_NAME: 'b', GIT_AUTHOR_EMAIL: 'b@b', GIT_COMMITTER_NAME: 'b', GIT_COMMITTER_EMAIL: 'b@b' };

interface Tree {
  key: string;
  name: string;
  fill: (dir: string) => void;
}

const TREES: Tree[] = [
  { key: 'etc', name: "this machine's /etc", fill: (d) => sh(`cp -a /etc ${JSON.stringify(d)} 2>/dev/null || true`) },
  { key: 'usr-share', name: "this machine's /usr/share", fill: (d) => sh(`cp -a /usr/share ${JSON.stringify(d)} 2>/dev/null || true`) },
  { key: 'generated', name: 'generated: 10,000 files of 1-8 KiB', fill: (d) => void generateTree(d, { files: 10_000, dirs: 200, minSize: 1024, maxSize: 8192 }) },
];

function du(dir: string): { paths: number; bytes: number } {
  let paths = 1;
  let bytes = 0;
  for (const e of fs.readdirSync(dir, { withFileTypes: true, recursive: true })) {
    paths++;
    if (e.isFile()) bytes += fs.lstatSync(path.join(e.parentPath, e.name)).size;
  }
  return { paths, bytes };
}

/** What freshDisk did before the last series. */
let cacheNote = '';

/**
 * Run each tool once per run, in rotating order, after an untimed round that fills the caches
 * (run "warm"); each tool's times. A tool's `go` keeps what it writes: the series deletes
 * nothing (see freshDisk).
 */
async function alternate(base: string, tools: { name: string; go: (run: string) => Promise<number> }[]): Promise<Map<string, number[]>> {
  const times = new Map(tools.map((t) => [t.name, [] as number[]]));
  cacheNote = freshDisk(base);
  for (const t of tools) {
    await runProc('sync', []);
    await t.go('warm');
  }
  for (let i = 0; i < RUNS; i++) {
    for (let k = 0; k < tools.length; k++) {
      const t = tools[(i + k) % tools.length];
      await runProc('sync', []);
      times.get(t.name)!.push(await t.go(String(i)));
    }
    process.stderr.write(`run ${i + 1}/${RUNS}: ${tools.map((t) => `${t.name} ${fmtMs(times.get(t.name)![i])}`).join(', ')} (load ${os.loadavg()[0].toFixed(1)})\n`);
  }
  return times;
}

async function benchTree(tree: Tree, sshd: NonNullable<Awaited<ReturnType<typeof startSshd>>>, rows: string[][]): Promise<void> {
  const base = tempDir(`trees-${tree.key}`);
  try {
    const src = path.join(base, 'src');
    const srcEnv = writeBenchHost(src, sshd, HOST);
    const data = path.join(src, 'data');
    tree.fill(data);
    const size = du(data);
    process.stderr.write(`${tree.name}: ${size.paths} paths, ${(size.bytes / 2 ** 20).toFixed(0)} MiB\n`);
    const ssh = `ssh -p ${sshd.port} -i ${sshd.clientKeyFile} -o UserKnownHostsFile=${path.join(src, 'etc/pacha/known_hosts')} -o StrictHostKeyChecking=yes -o BatchMode=yes`;
    const resticEnv = { RESTIC_PASSWORD: 'bench-only', RESTIC_CACHE_DIR: path.join(base, 'restic-cache') };
    const restic = (repo: string, args: string[]) =>
      runProc('restic', ['-r', `sftp:${sshd.user}@127.0.0.1:${repo}`, '-o', `sftp.command=${ssh} ${sshd.user}@127.0.0.1 -s sftp`, '--no-lock', ...args], { env: resticEnv });
    const masterHost = path.join(sshd.hostsPath, HOST);
    const repoBytes = new Map<string, number>();
    const stateDir = path.join(src, 'var/lib/pacha');

    if (REBUILD_ONLY) {
      // The previous tree's history is on the master under the same host name.
      fs.rmSync(masterHost, { recursive: true, force: true });
      await runProc(process.execPath, [PACHA_BIN, 'snapshot'], { env: srcEnv });
      await runProc(process.execPath, [PACHA_BIN, 'push'], { env: srcEnv });
      await restic(path.join(base, 'restic-repo-0'), ['init', '-q']);
      await restic(path.join(base, 'restic-repo-0'), ['backup', '-q', '--host', HOST, data]);
    } else {
      // First snapshot + push (backup).
      // The previous run's repositories are moved aside, not deleted: as for the other tools,
      // nothing is deleted before the series ends (freshDisk: deleted inodes slow down the
      // files created after them), and freeing hundreds of MiB is not work for the next run.
      let kept = 0;
      const keepAside = (dir: string) => {
        if (!fs.existsSync(dir)) return;
        // The sshd is shared by the trees: a name an earlier tree kept is skipped.
        while (fs.existsSync(`${dir}.run${kept}`)) kept++;
        fs.renameSync(dir, `${dir}.run${kept++}`);
      };
      const pachaFirst = (bin: string) => async () => {
        keepAside(stateDir);
        keepAside(masterHost);
        const t = performance.now();
        await runProc(process.execPath, [bin, 'snapshot'], { env: srcEnv });
        await runProc(process.execPath, [bin, 'push'], { env: srcEnv });
        const ms = performance.now() - t;
        // What the master holds: the same for both versions, or the A/B is not of like with like.
        repoBytes.set(bin, Number(execFileSync('du', ['-sb', path.join(masterHost, 'repo')], { encoding: 'utf8' }).split('\t')[0]));
        return ms;
      };
      // Untimed: the first run of a checkout after a change fills Node's compile cache.
      for (const bin of [PACHA_BIN, ...(BASELINE ? [BASELINE] : [])]) await warmUp(bin, base, sshd);
      const first = await alternate(base, [
        { name: 'pacha', go: pachaFirst(PACHA_BIN) },
        ...(BASELINE ? [{ name: 'baseline', go: pachaFirst(BASELINE) }] : []),
        {
          name: 'rsync',
          go: async (i) => {
            const dest = path.join(base, `rsync-dest-${i}`);
            return (await runProc('rsync', ['-a', '-e', ssh, `${data}/`, `${sshd.user}@127.0.0.1:${dest}/`])).ms;
          },
        },
        {
          name: 'restic',
          go: async (i) => {
            const repo = path.join(base, `restic-repo-${i}`);
            await restic(repo, ['init', '-q']);
            return (await restic(repo, ['backup', '-q', '--host', HOST, data])).ms;
          },
        },
        {
          name: 'git',
          go: async (i) => {
            const gitDir = path.join(base, `git-${i}`);
            // No gc --auto: over gc.auto's 6,700 loose objects, git commit starts it detached, and
            // its repack ran (untimed, at 100% of a core) into the next tool's timed run.
            sh(`git init -q --bare ${JSON.stringify(gitDir)} && git --git-dir ${JSON.stringify(gitDir)} config gc.auto 0`);
            return (await runProc('sh', ['-c', 'git add -A && git commit -q -m first'], { cwd: data, env: { ...gitEnv, GIT_DIR: gitDir, GIT_WORK_TREE: data, GIT_INDEX_FILE: path.join(gitDir, 'index') } })).ms;
          },
        },
      ]);
      sh(`git --git-dir ${JSON.stringify(path.join(masterHost, 'repo'))} fsck --full --strict`);
      if (BASELINE) {
        // The last pacha of the rotation left its repository on the master: make it this one's.
        await pachaFirst(PACHA_BIN)();
        sh(`git --git-dir ${JSON.stringify(path.join(masterHost, 'repo'))} fsck --full --strict`);
      }
      const m = (k: string) => median(first.get(k)!);
      rows.push([
        `${tree.name} (${size.paths.toLocaleString('en')} paths, ${(size.bytes / 2 ** 20).toFixed(0)} MiB): first snapshot + push`,
        fmtMs(m('pacha')), fmtMs(m('rsync')), fmtMs(m('restic')), fmtMs(m('git')) + ' (local)',
        `${(m('pacha') / m('rsync')).toFixed(2)} / ${(m('pacha') / m('restic')).toFixed(2)}`, '<= 1.00 / <= 1.00',
      ]);
      if (BASELINE) {
        const runs = (k: string) => first.get(k)!.map(fmtMs).join(', ');
        const mib = (bin: string) => `${((repoBytes.get(bin) ?? 0) / 2 ** 20).toFixed(1)} MiB`;
        rows.push([
          `${tree.name}: first snapshot + push, baseline ${BASELINE} (runs: this ${runs('pacha')}; baseline ${runs('baseline')}; master repository: this ${mib(PACHA_BIN)}, baseline ${mib(BASELINE)})`,
          fmtMs(m('baseline')), '', '', '', `this / baseline ${(m('pacha') / m('baseline')).toFixed(2)}`, '',
        ]);
      }
    }
    if (FIRST_ONLY) return;

    // Rebuild (restore) into an empty host.
    const restoreRepo = path.join(base, 'restic-repo-0');
    const pachaRebuild = (bin: string, name: string) => async (run: string) => {
      const dst = path.join(base, `${name}-dst-${run}`);
      fs.mkdirSync(dst);
      const env = writeBenchHost(dst, sshd, HOST);
      const t = performance.now();
      await runProc(process.execPath, [bin, 'rebuild', HOST, '--yes'], { env });
      return performance.now() - t;
    };
    const rebuild = await alternate(base, [
      { name: 'pacha', go: pachaRebuild(PACHA_BIN, 'pacha') },
      ...(BASELINE ? [{ name: 'baseline', go: pachaRebuild(BASELINE, 'baseline') }] : []),
      {
        name: 'rsync',
        go: async (i) => {
          const dst = path.join(base, `rsync-dst-${i}`);
          fs.mkdirSync(dst);
          return (await runProc('rsync', ['-a', '-e', ssh, `${sshd.user}@127.0.0.1:${data}/`, dst + '/'])).ms;
        },
      },
      {
        name: 'restic',
        go: async (i) => {
          const dst = path.join(base, `restic-dst-${i}`);
          fs.mkdirSync(dst);
          return (await restic(restoreRepo, ['restore', 'latest', '-q', '--target', dst])).ms;
        },
      },
    ]);
    const r = (k: string) => median(rebuild.get(k)!);
    rows.push([`${tree.name}: rebuild / restore (owners, modes, times)`, fmtMs(r('pacha')), fmtMs(r('rsync')), fmtMs(r('restic')), '', `${(r('pacha') / r('rsync')).toFixed(2)} / ${(r('pacha') / r('restic')).toFixed(2)}`, '<= 1.00 x rsync']);
    if (BASELINE) {
      const runs = (k: string) => rebuild.get(k)!.map(fmtMs).join(', ');
      rows.push([`${tree.name}: rebuild, baseline ${BASELINE} (runs: this ${runs('pacha')}; baseline ${runs('baseline')})`, fmtMs(r('baseline')), '', '', '', `this / baseline ${(r('pacha') / r('baseline')).toFixed(2)}`, '']);
    }
  } finally {
    removeTree(base);
  }
}

/** snapshot + push of one file as another host, untimed. */
async function warmUp(bin: string, base: string, sshd: NonNullable<Awaited<ReturnType<typeof startSshd>>>): Promise<void> {
  const dir = fs.mkdtempSync(path.join(base, 'warm-up-'));
  const env = writeBenchHost(dir, sshd, 'warmup');
  fs.mkdirSync(path.join(dir, 'data'));
  fs.writeFileSync(path.join(dir, 'data/file'), 'x\n');
  await runProc(process.execPath, [bin, 'snapshot'], { env });
  await runProc(process.execPath, [bin, 'push'], { env });
  removeTree(dir);
  removeTree(path.join(sshd.hostsPath, 'warmup'));
}

export async function run(args: string[] = []): Promise<void> {
  const only = TREES.filter((t) => args.includes(`tree=${t.key}`));
  const trees = only.length > 0 ? only : TREES;
  const sshd = await startSshd({ what: 'the trees benchmark' });
  if (!sshd) throw new Error('the trees benchmark needs OpenSSH sshd');
  const rows: string[][] = [];
  const load: number[] = [];
  try {
    for (const t of trees) {
      await benchTree(t, sshd, rows);
      load.push(os.loadavg()[0]);
    }
  } finally {
    await sshd.stop();
  }
  const table = markdownTable(['tree: case', 'pacha', 'rsync', 'restic', 'git', 'pacha / rsync / restic', 'target'], rows);
  const text = [
    '# Real trees',
    '',
    `${new Date().toISOString()}, median of ${RUNS} runs (PACHA_BENCH_RUNS), tools alternating within each run; ` +
      `${os.cpus().length} CPUs, load average after each tree ${load.map((l) => l.toFixed(1)).join(', ')}.`,
    '',
    table,
    'Over one OpenSSH sshd on loopback, same key and default cipher for every tool. pacha runs as processes',
    "(`pacha snapshot`, `pacha push`, `pacha rebuild`), timed together; restic's repository is initialised untimed;",
    'git commits locally (it has no transfer in this row). The rebuild restores owners, modes and times, as',
    '`rsync -a` and `restic restore` do (all run as root).',
    'Each series starts on a disk that looks fresh to every tool alike (on ext4 without a journal, inodes deleted',
    'in the last minutes slow down every file created after them in their block group): ' + cacheNote + ';',
    'then one untimed round of every tool, and no destination is deleted before the series ends; every timed',
    'command starts after a `sync`.',
    '',
  ].join('\n');
  process.stdout.write(table);
  if (only.length === 0) process.stderr.write(`saved ${saveResult(benchDir, 'trees', text)}\n`);
  else process.stdout.write(text);
}
