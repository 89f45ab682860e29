// The physical floor next to which the other benchmarks read: how fast this machine reads a
// file (page cache warm and cold-ish), and how fast SSH moves bytes over loopback.
import fs from 'node:fs';
import path from 'node:path';
import { startSshd } from '@pacha/test-support/sshd';
import { median, runProc } from './lib/measure.ts';
import { markdownTable, saveResult } from './lib/table.ts';
import { generateBigFile, generateTree, removeTree, tempDir } from './lib/tree.ts';

const RUNS = Number(process.env.PACHA_BENCH_RUNS ?? 3);
const MiB = 1024 * 1024;

export async function run(): Promise<string> {
  const dir = tempDir('pacha-bench-floor-');
  const rows: string[][] = [];
  try {
    const big = path.join(dir, 'big');
    generateBigFile(big, 256 * MiB);
    const read: number[] = [];
    for (let i = 0; i < RUNS; i++) read.push((await runProc('sh', ['-c', `cat ${big} > /dev/null`])).ms);
    rows.push(['local read, one 256 MiB file (page cache)', `${median(read).toFixed(0)} ms`, `${((256 / median(read)) * 1000).toFixed(0)} MiB/s`]);

    const tree = path.join(dir, 'tree');
    const t = generateTree(tree, { files: 10_000, dirs: 200, minSize: 1024, maxSize: 8192, seed: 7 });
    const walk: number[] = [];
    for (let i = 0; i < RUNS; i++) walk.push((await runProc('sh', ['-c', `find ${tree} -type f -print0 | xargs -0 cat > /dev/null`])).ms);
    rows.push([`local read, ${t.files} files of 1-8 KiB (find + xargs cat)`, `${median(walk).toFixed(0)} ms`, `${((t.bytes / MiB / median(walk)) * 1000).toFixed(0)} MiB/s`]);

    const sshd = await startSshd();
    if (sshd) {
      try {
        const knownHosts = path.join(dir, 'known_hosts');
        fs.writeFileSync(knownHosts, sshd.knownHostsLine + '\n');
        const ssh = `ssh -p ${sshd.port} -i ${sshd.clientKeyFile} -o UserKnownHostsFile=${knownHosts} -o StrictHostKeyChecking=yes -o BatchMode=yes`;
        const link: number[] = [];
        for (let i = 0; i < RUNS; i++) link.push((await runProc('sh', ['-c', `head -c ${256 * MiB} /dev/zero | ${ssh} ${sshd.user}@127.0.0.1 'cat > /dev/null'`])).ms);
        rows.push(["raw SSH over loopback, 256 MiB through ssh 'cat > /dev/null'", `${median(link).toFixed(0)} ms`, `${((256 / median(link)) * 1000).toFixed(0)} MiB/s`]);
        const conn: number[] = [];
        for (let i = 0; i < RUNS; i++) conn.push((await runProc('sh', ['-c', `${ssh} ${sshd.user}@127.0.0.1 true`])).ms);
        rows.push(['SSH connection set-up (ssh ... true)', `${median(conn).toFixed(0)} ms`, '']);
      } finally {
        await sshd.stop();
      }
    }
  } finally {
    removeTree(dir);
  }
  const text = `# The physical floor\n\nMedians of ${RUNS} runs.\n\n${markdownTable(['measure', 'median', 'throughput'], rows)}`;
  process.stdout.write(text);
  saveResult(import.meta.dirname, 'floor', text);
  return text;
}
