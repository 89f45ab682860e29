// Rebuild of a lost host against rsync and restic, side by side in one run (medians):
// 10,000 files of 1-8 KiB in 200 directories, snapshotted and pushed with pacha to a real
// OpenSSH sshd on loopback, then restored into an empty folder by
//   pacha rebuild HOST --yes         (fetch over SFTP, validate, restore with owners/modes/mtimes, one syncfs at the end)
//   rsync -a root@127.0.0.1:DATA/ .  (pull over ssh from the same sshd)
//   restic restore latest            (restic repository on the same sshd over sftp)
// Everything runs as separate processes from a warm page cache; data lives under /tmp and is removed
// when the series ends, not before: the series starts on a disk that looks fresh to every tool
// alike (freshDisk in lib/tree.ts: on this ext4 without a journal, inodes deleted in the last
// minutes slow down every file created after them in their block group): every destination in a
// little-used block group, `sync`, the clean page and buffer cache dropped, then one untimed
// round of every tool fills the caches again.
// PACHA_BENCH_BASELINE=/other/checkout/packages/agent/bin/pacha.js adds that pacha to the same
// rotation (A/B of two versions on the same machine at the same time), with the restore phase
// of each (report.json) beside the whole command.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { PACHA_BIN } from '@pacha/test-support/cli';
import { startSshd } from '@pacha/test-support/sshd';
import { fmtMs, median, runProc } from './lib/measure.ts';
import { writeBenchHost } from './lib/host.ts';
import { markdownTable, saveResult } from './lib/table.ts';
import { freshDisk, generateTree, removeTree, tempDir } from './lib/tree.ts';

const benchDir = path.dirname(fileURLToPath(import.meta.url));
const RUNS = Number(process.env.PACHA_BENCH_RUNS ?? 5);
const HOST = 'benchhost';
const FILES = 10_000;
const BASELINE = process.env.PACHA_BENCH_BASELINE;

export async function run(): Promise<void> {
  const sshd = await startSshd({ what: 'the rebuild benchmark' });
  if (!sshd) throw new Error('the rebuild benchmark needs OpenSSH sshd');
  const base = tempDir('rebuild');
  try {
    // The host to lose: generate, snapshot, push.
    const src = path.join(base, 'src');
    const srcEnv = writeBenchHost(src, sshd, HOST);
    const gen = generateTree(path.join(src, 'data'), { files: FILES, dirs: 200, minSize: 1024, maxSize: 8192 });
    process.stderr.write(`generated ${gen.files} files, ${(gen.bytes / 1048576).toFixed(1)} MiB; snapshot and push...\n`);
    await runProc(process.execPath, [PACHA_BIN, 'snapshot'], { env: srcEnv });
    await runProc(process.execPath, [PACHA_BIN, 'push'], { env: srcEnv });

    // restic repository on the same sshd, over sftp.
    const ssh = `ssh -p ${sshd.port} -i ${sshd.clientKeyFile} -o UserKnownHostsFile=${path.join(src, 'etc/pacha/known_hosts')} -o StrictHostKeyChecking=yes -o BatchMode=yes`;
    const resticRepo = `sftp:${sshd.user}@127.0.0.1:${path.join(base, 'restic-repo')}`;
    const resticEnv = { RESTIC_PASSWORD: 'bench-only', RESTIC_CACHE_DIR: path.join(base, 'restic-cache') };
    const restic = (args: string[]) => runProc('restic', ['-r', resticRepo, '-o', `sftp.command=${ssh} ${sshd.user}@127.0.0.1 -s sftp`, '--no-lock', ...args], { env: resticEnv });
    await restic(['init', '-q']);
    await restic(['backup', '-q', '--host', HOST, path.join(src, 'data')]);

    const p: number[] = [];
    const r: number[] = [];
    const s: number[] = [];
    const b: number[] = [];
    // Restore phase (files, then directory metadata) and validation, from each run's report.json.
    const phases: Record<'pacha' | 'baseline', { restore: number[]; validate: number[] }> = {
      pacha: { restore: [], validate: [] },
      baseline: { restore: [], validate: [] },
    };
    const rebuildWith = (bin: string, which: 'pacha' | 'baseline') => async (i: number | 'warm') => {
      const dst = path.join(base, `dst-${which}-${i}`);
      fs.mkdirSync(dst);
      const env = writeBenchHost(dst, sshd, HOST);
      await runProc('sync', []);
      const res = await runProc(process.execPath, [bin, 'rebuild', HOST, '--yes'], { env });
      const count = fs.readdirSync(path.join(dst, 'data')).reduce((n, d) => n + fs.readdirSync(path.join(dst, 'data', d)).length, 0);
      if (count !== FILES) throw new Error(`${which} rebuild restored ${count} files, expected ${FILES}:\n${res.stderr}`);
      if (i === 'warm') return res.ms;
      const ph = JSON.parse(fs.readFileSync(path.join(dst, 'var/lib/pacha/report.json'), 'utf8')).rebuild.phases as Record<string, number>;
      phases[which].restore.push((ph.restore ?? 0) + (ph.metadata ?? 0));
      phases[which].validate.push(ph.validate ?? 0);
      return res.ms;
    };
    // Each tool starts with nothing dirty in the page cache (sync, untimed): otherwise the one
    // that fsyncs pays for the others' writeback. The order rotates from run to run.
    const tools: { name: string; times: number[]; go: (i: number | 'warm') => Promise<number> }[] = [
      { name: 'pacha', times: p, go: rebuildWith(PACHA_BIN, 'pacha') },
      ...(BASELINE ? [{ name: 'baseline', times: b, go: rebuildWith(BASELINE, 'baseline') }] : []),
      {
        name: 'rsync',
        times: r,
        go: async (i) => {
          const rdst = path.join(base, `rsync-${i}`);
          fs.mkdirSync(rdst);
          await runProc('sync', []);
          return (await runProc('rsync', ['-a', '-e', ssh, `${sshd.user}@127.0.0.1:${path.join(src, 'data')}/`, rdst + '/'])).ms;
        },
      },
      {
        name: 'restic',
        times: s,
        go: async (i) => {
          const sdst = path.join(base, `restic-${i}`);
          fs.mkdirSync(sdst);
          await runProc('sync', []);
          return (await restic(['restore', 'latest', '-q', '--target', sdst])).ms;
        },
      },
    ];
    const cacheNote = freshDisk(base);
    for (const t of tools) await t.go('warm');
    const runsText: string[] = ['| run | pacha | rsync | restic |' + (BASELINE ? ' baseline |' : ''), '|---|---|---|---|' + (BASELINE ? '---|' : '')];
    for (let i = 0; i < RUNS; i++) {
      for (let k = 0; k < tools.length; k++) {
        const t = tools[(i + k) % tools.length];
        t.times.push(await t.go(i));
      }
      const ab = BASELINE ? `, baseline ${fmtMs(b[i])} (restore phase ${fmtMs(phases.pacha.restore[i])} vs ${fmtMs(phases.baseline.restore[i])})` : '';
      process.stderr.write(`run ${i + 1}/${RUNS}: pacha ${fmtMs(p[i])}, rsync ${fmtMs(r[i])}, restic ${fmtMs(s[i])}${ab}\n`);
      runsText.push(`| ${i + 1} | ${fmtMs(p[i])} | ${fmtMs(r[i])} | ${fmtMs(s[i])} |` + (BASELINE ? ` ${fmtMs(b[i])} |` : ''));
    }
    const mp = median(p);
    const mr = median(r);
    const ms = median(s);
    const table = markdownTable(
      ['restore of 10,000 files of 1-8 KiB in 200 dirs from OpenSSH on loopback', 'median', 'pacha / this'],
      [
        ['pacha rebuild HOST --yes (SFTP fetch, validate, restore with owners, modes, mtimes, then syncfs)', fmtMs(mp), '1.00'],
        ['rsync -a pull over ssh', fmtMs(mr), (mp / mr).toFixed(2)],
        ['restic restore latest (sftp repository)', fmtMs(ms), (mp / ms).toFixed(2)],
      ],
    );
    const abText = BASELINE
      ? `\nA/B against ${BASELINE}, alternating in the same rotation (medians; restore = the restore and directory-metadata phases of report.json):\n\n` +
        markdownTable(
          ['', 'whole rebuild', 'restore phase', 'validate phase'],
          [
            ['this pacha', fmtMs(mp), fmtMs(median(phases.pacha.restore)), fmtMs(median(phases.pacha.validate))],
            ['baseline', fmtMs(median(b)), fmtMs(median(phases.baseline.restore)), fmtMs(median(phases.baseline.validate))],
            ['this / baseline', (mp / median(b)).toFixed(2), (median(phases.pacha.restore) / median(phases.baseline.restore)).toFixed(2), (median(phases.pacha.validate) / median(phases.baseline.validate)).toFixed(2)],
          ],
        )
      : '';
    const load = os.loadavg().map((x) => x.toFixed(1)).join(' ');
    const text =
      `# Rebuild benchmark\n\n${new Date().toISOString()}, ${os.cpus().length} CPUs, load average at the end ${load}; ` +
      `${RUNS} runs each, ${(gen.bytes / 1048576).toFixed(1)} MiB in ${FILES} files; ` +
      `target: pacha at most 1.00x rsync.\n\n${table}\nEvery tool starts as a fresh process and restores into an empty folder on the same disk; ` +
      `pacha additionally waits for the disk at the end (one syncfs), which rsync and restic do not. Before each timed ` +
      `command the page cache is synced (untimed) and the order of the tools rotates from run to run. The series starts on a disk ` +
      `that looks fresh to every tool alike (on ext4 without a journal, inodes deleted in the last minutes slow down every ` +
      `file created after them in their block group): ${cacheNote}; then one untimed round of every tool; ` +
      `no destination is deleted before the series ends.\n${abText}\nEvery run:\n\n${runsText.join('\n')}\n`;
    process.stdout.write(text);
    process.stderr.write(`saved ${saveResult(benchDir, 'rebuild', text)}\n`);
  } finally {
    await sshd.stop();
    removeTree(base);
  }
}
