// Push against rsync over the same OpenSSH sshd on loopback, side by side in one run (medians):
//  (a) first push of a 10,000-file snapshot (1-8 KiB files in 200 dirs) vs `rsync -a` of the files
//  (b) push after one changed file: the library call (with and without the SSH connect) and the
//      whole `pacha push` process
//  next to the raw SSH throughput of the link (256 MiB through `ssh ... 'cat > /dev/null'`).
// Same key and the client's default cipher on both sides; generated data under /tmp, removed after.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { PACHA_BIN } from '@pacha/test-support/cli';
import { startSshd } from '@pacha/test-support/sshd';
import { loadConfig } from '@pacha/shared/config';
import { statePaths } from '@pacha/shared/state';
import { silentLogger } from '@pacha/shared/log';
import { openTransport } from '@pacha/shared/transport/open';
import { pushSnapshots } from '@pacha/shared/push/push';
import { fmtMs, median, runProc, sh } from './lib/measure.ts';
import { freshDisk, generateTree, removeTree, tempDir } from './lib/tree.ts';
import { writeBenchHost } from './lib/host.ts';
import { markdownTable, saveResult } from './lib/table.ts';

const benchDir = path.dirname(fileURLToPath(import.meta.url));
const RUNS = Number(process.env.PACHA_BENCH_RUNS ?? 5);

export async function run(): Promise<void> {
  const sshd = await startSshd({ what: 'the push benchmark' });
  if (!sshd) throw new Error('the push benchmark needs OpenSSH sshd');
  const base = tempDir('push');
  try {
    const root = path.join(base, 'host');
    const data = path.join(root, 'data');
    process.stderr.write('generating 10,000 files of 1-8 KiB in 200 dirs...\n');
    const tree = generateTree(data, { files: 10_000, dirs: 200, minSize: 1024, maxSize: 8192 });
    const env = writeBenchHost(root, sshd, 'bench');
    const knownHosts = path.join(root, 'etc/pacha/known_hosts');
    await runProc(process.execPath, [PACHA_BIN, 'snapshot'], { env });
    const masterHost = path.join(sshd.hostsPath, 'bench');
    const ssh = `ssh -p ${sshd.port} -i ${sshd.clientKeyFile} -o UserKnownHostsFile=${knownHosts} -o StrictHostKeyChecking=yes -o BatchMode=yes`;
    const rows: string[][] = [];

    // Raw link: what any tool can at best do over this SSH connection.
    const link: number[] = [];
    for (let i = 0; i < 3; i++) {
      link.push((await runProc('sh', ['-c', `head -c 268435456 /dev/zero | ${ssh} ${sshd.user}@127.0.0.1 'cat > /dev/null'`])).ms);
    }
    const mibps = 256 / (median(link) / 1000);

    // (a) first push vs rsync -a, alternating so both see the same machine load. As in the trees
    // benchmark (freshDisk), nothing is deleted before the series ends: the master's copy of the
    // host is moved aside and rsync gets a new folder each run. One untimed round first.
    const diskNote = freshDisk(base);
    const p: number[] = [];
    const r: number[] = [];
    let bytes = 0;
    for (let i = -1; i < RUNS; i++) {
      if (fs.existsSync(masterHost)) fs.renameSync(masterHost, `${masterHost}.run${i}`);
      const res = await runProc(process.execPath, [PACHA_BIN, 'push', '--json'], { env });
      bytes = JSON.parse(res.stdout).bytes;
      const rs = await runProc('rsync', ['-a', '-e', ssh, `${data}/`, `${sshd.user}@127.0.0.1:${path.join(base, `rsync-dest-${i}`)}/`]);
      if (i < 0) continue;
      p.push(res.ms);
      r.push(rs.ms);
    }
    sh(`git --git-dir ${JSON.stringify(path.join(masterHost, 'repo'))} fsck --full --strict`);
    rows.push([
      `(a) first push of ${tree.files} files (${(tree.bytes / 1048576).toFixed(1)} MiB; pack ${(bytes / 1048576).toFixed(1)} MiB) vs rsync -a`,
      fmtMs(median(p)), fmtMs(median(r)), (median(p) / median(r)).toFixed(2), '<= 1.00',
    ]);

    // (b) one changed file: snapshot (untimed), then push.
    const config = loadConfig({ env: { ...process.env, ...env } });
    const pushEnv = { config, state: statePaths(config.stateDir), log: silentLogger };
    const change = async (i: number) => {
      fs.appendFileSync(path.join(data, 'd0042', fs.readdirSync(path.join(data, 'd0042'))[0]), `# change ${i}\n`);
      await runProc(process.execPath, [PACHA_BIN, 'snapshot'], { env });
    };
    const lib: number[] = [];
    const libOpen: number[] = [];
    const cli: number[] = [];
    const open = await openTransport(config, silentLogger);
    try {
      for (let i = 0; i < RUNS; i++) {
        await change(3 * i);
        let t = performance.now();
        const a = await pushSnapshots(pushEnv);
        lib.push(performance.now() - t);
        if (a.commits !== 1) throw new Error(`expected one commit pushed, got ${a.commits}`);
        await change(3 * i + 1);
        t = performance.now();
        await pushSnapshots(pushEnv, { transport: open });
        libOpen.push(performance.now() - t);
        await change(3 * i + 2);
        cli.push((await runProc(process.execPath, [PACHA_BIN, 'push'], { env })).ms);
      }
    } finally {
      await open.close();
    }
    sh(`git --git-dir ${JSON.stringify(path.join(masterHost, 'repo'))} fsck --full --strict`);
    rows.push(['(b) push after one changed file: library call incl. SSH connect', fmtMs(median(lib)), '', '', '< 100 ms']);
    rows.push(['(b) push after one changed file: library call on an open connection', fmtMs(median(libOpen)), '', '', '< 100 ms']);
    rows.push(['(b) push after one changed file: whole `pacha push` process', fmtMs(median(cli)), '', '', '']);
    rows.push([`raw SSH link: 256 MiB through ssh 'cat > /dev/null'`, fmtMs(median(link)), '', '', `${mibps.toFixed(0)} MiB/s`]);

    const table = markdownTable(['push to OpenSSH sshd on loopback', 'pacha (median)', 'rsync -a (median)', 'pacha / rsync', 'target / note'], rows);
    const text = [
      '# Push benchmark',
      '',
      `${new Date().toISOString()}, ${RUNS} runs each (PACHA_BENCH_RUNS), medians; ${tree.files} files, ${(tree.bytes / 1048576).toFixed(1)} MiB; ` +
        `${os.cpus().length} CPUs, load average at the end ${os.loadavg()[0].toFixed(1)}.`,
      '',
      table,
      'Both sides start as fresh processes and use the same key and the ssh client\'s default cipher. ' +
        'The first push includes building one pack of every object (entries the snapshot stored whole are copied, not deflated again), ' +
        'the upload, the renames and the ref update; rsync copies the plain files into an empty folder. ' +
        `Before (a): ${diskNote}; one untimed round of both; nothing is deleted until the series ends. ` +
        'The incremental push is timed after an untimed `pacha snapshot` of the change; the library call with connect includes the SSH handshake and host key check.',
      '',
    ].join('\n');
    process.stdout.write(table);
    process.stderr.write(`saved ${saveResult(benchDir, 'push', text)}\n`);
  } finally {
    removeTree(base);
    await sshd.stop();
  }
}
