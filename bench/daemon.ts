// `npm run bench -- daemon`: how fast a change made on a watched 100,000-file tree reaches the
// master with pacha.frequency = 0, next to a second `rsync -a` finding and sending the same
// change, and what the daemon costs while idle (CPU over 60 s, resident memory).
//
// Master: OpenSSH sshd on loopback when available (test-support/sshd.ts), else a local folder
// (pacha.host = file://); the results say which. Data lives under /tmp and is removed.
// Knobs: BENCH_DAEMON_FILES (100000), BENCH_DAEMON_EDITS (50), BENCH_DAEMON_IDLE_S (60).
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { PACHA_BIN, REPO_DIR } from '@pacha/test-support/cli';
import { makeTestHost } from '@pacha/test-support/host';
import { opensshTarget, writeAgentConfig } from '@pacha/test-support/master';
import { startSshd, type SshdHandle } from '@pacha/test-support/sshd';
import { median } from './lib/measure.ts';
import { markdownTable, saveResult } from './lib/table.ts';
import { generateTree, tempDir } from './lib/tree.ts';

const FILES = Number(process.env.BENCH_DAEMON_FILES ?? 100_000);
const EDITS = Number(process.env.BENCH_DAEMON_EDITS ?? 50);
const IDLE_S = Number(process.env.BENCH_DAEMON_IDLE_S ?? 60);
const DIRS = Math.max(1, Math.round(FILES / 100));
const RSYNC_RUNS = 5;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const now = () => performance.now();

function percentile(values: number[], p: number): number {
  const s = [...values].sort((a, b) => a - b);
  return s[Math.max(0, Math.ceil((p / 100) * s.length) - 1)];
}

function ms(v: number): string {
  return v < 1000 ? `${v.toFixed(0)} ms` : `${(v / 1000).toFixed(2)} s`;
}

function procStat(pid: number): { ticks: number; rssKiB: number; hwmKiB: number } {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  // Fields after the command name "(...)": utime is field 14, stime 15 (1-based).
  const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const ticks = Number(rest[11]) + Number(rest[12]);
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  const kib = (k: string) => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN);
  return { ticks, rssKiB: kib('VmRSS'), hwmKiB: kib('VmHWM') };
}

/** KEY=VALUE pairs of the Environment= lines of packages/agent/pacha.service. */
function unitEnvironment(): Record<string, string> {
  const unit = fs.readFileSync(path.join(REPO_DIR, 'packages/agent/pacha.service'), 'utf8');
  const env: Record<string, string> = {};
  for (const line of unit.split('\n')) {
    const m = /^Environment=(.*)$/.exec(line.trim());
    if (!m) continue;
    for (const kv of m[1].split(/\s+/)) {
      const i = kv.indexOf('=');
      if (i > 0) env[kv.slice(0, i)] = kv.slice(i + 1);
    }
  }
  return env;
}

/**
 * From the daemon's -v log: the watcher's event for the file, the snapshot's line, the push's
 * line, the master's ref seen moving (ms, each from the one before); undefined without -v.
 */
function stagesOf(arrived: { t: number; line: string }[], t0: number, tRef: number, name: string): Record<string, number> | undefined {
  const after = (t: number, re: RegExp) => arrived.find((a) => a.t >= t && re.test(a.line))?.t;
  const tEvent = after(t0, new RegExp(`^changed: .*/${name}$`));
  const tSnap = tEvent === undefined ? undefined : after(tEvent, /^snapshot [0-9a-f]{12}: /);
  const tPush = tSnap === undefined ? undefined : after(tSnap, /^pushed \d+ snapshots? to /);
  if (tPush === undefined) return undefined;
  return { event: tEvent! - t0, snapshot: tSnap! - tEvent!, push: tPush - tSnap!, 'ref seen': tRef - tPush };
}

export async function benchDaemon(): Promise<string> {
  const work = tempDir('daemon');
  let sshd: SshdHandle | null = null;
  let daemon: ChildProcess | undefined;
  try {
    process.stderr.write(`daemon bench: generating ${FILES} files under ${work}\n`);
    const host = makeTestHost({ name: 'benchhost', tmpDir: work });
    const tree = host.p('/srv/tree');
    let t = now();
    const gen = generateTree(tree, { files: FILES, dirs: DIRS, minSize: 100, maxSize: 1000 });
    process.stderr.write(`  tree written in ${ms(now() - t)}\n`);

    try {
      sshd = await startSshd({ what: 'the OpenSSH master of the daemon bench (falling back to a local folder)' });
    } catch (e) {
      process.stderr.write(`  sshd did not start (${(e as Error).message}); using a local folder\n`);
    }
    const common = { 'pacha.frequency': 0, 'pacha.watch': '/srv/tree', 'pacha.schedule': '0 0 1 1 *' };
    let masterKind: string;
    let masterRepo: string;
    let rsyncDest: string[];
    let rsyncSsh: string[] = [];
    if (sshd) {
      const target = opensshTarget(sshd);
      writeAgentConfig(host, target, common);
      masterKind = 'OpenSSH sshd on loopback (SFTP)';
      masterRepo = path.join(target.hostDir(host.name), 'repo');
      const kh = path.join(work, 'known_hosts');
      fs.writeFileSync(kh, sshd.knownHostsLine + '\n');
      const key = host.p('/etc/pacha/id_ed25519');
      rsyncSsh = ['-e', `ssh -p ${sshd.port} -i ${key} -o UserKnownHostsFile=${kh} -o StrictHostKeyChecking=yes -o BatchMode=yes`];
      rsyncDest = [`${sshd.user}@127.0.0.1:${path.join(work, 'rsync-dest')}/`];
    } else {
      const hosts = path.join(work, 'master');
      fs.mkdirSync(hosts);
      host.writeConfig({ 'pacha.host': 'file://', 'pacha.hosts.path': hosts, ...common });
      masterKind = 'local folder (pacha.host = file://)';
      masterRepo = path.join(hosts, host.name, 'repo');
      rsyncDest = [path.join(work, 'rsync-dest') + '/'];
    }
    const refFile = path.join(masterRepo, 'refs/heads/main');
    const readRef = () => {
      try {
        return fs.readFileSync(refFile, 'utf8').trim();
      } catch {
        return '';
      }
    };

    // Start the daemon and wait for the first full snapshot to reach the master.
    t = now();
    // The daemon runs with the environment the systemd unit gives it (Environment= lines).
    const unitEnv = unitEnvironment();
    const nodeArgs = (process.env.BENCH_DAEMON_NODE_ARGS ?? '').split(' ').filter((a) => a !== '');
    daemon = spawn(process.execPath, [...nodeArgs, PACHA_BIN, 'daemon', ...(process.env.BENCH_DAEMON_VERBOSE ? ['-v'] : [])], { env: { ...process.env, ...unitEnv, ...host.env }, cwd: REPO_DIR, stdio: ['ignore', 'ignore', 'pipe'] });
    let log = '';
    // With BENCH_DAEMON_VERBOSE, when each log line arrived: where an edit's latency goes.
    const arrived: { t: number; line: string }[] = [];
    let partial = '';
    daemon.stderr!.on('data', (d) => {
      log += d;
      const t = now();
      const lines = (partial + d).split('\n');
      partial = lines.pop()!;
      for (const line of lines) arrived.push({ t, line });
    });
    const pid = daemon.pid!;
    while (!/^watching /m.test(log)) {
      if (daemon.exitCode !== null) throw new Error(`daemon exited: ${log}`);
      await sleep(20);
    }
    const watchReady = now() - t;
    while (!/^pushed /m.test(log)) {
      if (daemon.exitCode !== null) throw new Error(`daemon exited: ${log}`);
      await sleep(50);
    }
    const firstPush = now() - t;
    process.stderr.write(`  daemon watching after ${ms(watchReady)}, first snapshot on the master after ${ms(firstPush)}\n`);
    await sleep(1000);

    // Latency: write one file, poll the master's ref until it moves.
    const lat: number[] = [];
    const stages: (Record<string, number> | undefined)[] = [];
    const fileOf = (f: number) => path.join(tree, `d${String(f % DIRS).padStart(4, '0')}`, `f${String(f).padStart(6, '0')}.conf`);
    /** Write file number i and wait for the master's ref to move: the latency (ms). */
    const edit = async (i: number, file: string): Promise<number> => {
      const before = readRef();
      const t0 = now();
      fs.writeFileSync(file, `edited ${i} at ${Date.now()}\n`);
      while (readRef() === before) {
        if (now() - t0 > 30_000) throw new Error(`edit ${i} did not reach the master in 30 s:\n${log.slice(-2000)}`);
        await sleep(2);
      }
      return now() - t0;
    };
    for (let i = 0; i < EDITS; i++) {
      const file = fileOf((i * 1237) % FILES);
      const t0 = now();
      lat.push(await edit(i, file));
      stages.push(stagesOf(arrived, t0, now(), path.basename(file)));
      await sleep(150);
    }
    process.stderr.write(`  latency p50 ${ms(percentile(lat, 50))}, p95 ${ms(percentile(lat, 95))}\n`);
    const known = stages.filter((x) => x !== undefined);
    if (known.length > 0) {
      const names = Object.keys(known[0]);
      process.stderr.write(`  stages (median of ${known.length}): ${names.map((n) => `${n} ${ms(median(known.map((x) => x[n])))}`).join(', ')}\n`);
    }

    // Idle cost, with the daemon watching the whole tree and nothing changing.
    await sleep(3000);
    const a = procStat(pid);
    process.stderr.write(`  measuring idle CPU for ${IDLE_S} s\n`);
    await sleep(IDLE_S * 1000);
    const b = procStat(pid);
    // An edit after the idle period: past 30 s idle the daemon has let go of the stat cache it
    // keeps in memory, so this snapshot reads it from its file.
    const afterIdle = await edit(EDITS, fileOf((EDITS * 1237) % FILES));
    const hz = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
    const idleCpu = ((b.ticks - a.ticks) / hz / IDLE_S) * 100;
    daemon.kill('SIGTERM');
    await new Promise((r) => daemon!.once('exit', r));
    daemon = undefined;
    if (process.env.BENCH_DAEMON_LOG) fs.writeFileSync(process.env.BENCH_DAEMON_LOG, log);

    // rsync: a full first copy, then the time a second run needs for one changed file.
    if (!sshd) fs.mkdirSync(rsyncDest[0], { recursive: true });
    t = now();
    execFileSync('rsync', ['-a', ...rsyncSsh, tree + '/', ...rsyncDest], { stdio: 'ignore' });
    const rsyncFirst = now() - t;
    const rs: number[] = [];
    for (let i = 0; i < RSYNC_RUNS; i++) {
      fs.writeFileSync(fileOf((i * 7919 + 3) % FILES), `rsync edit ${i} ${Date.now()}\n`);
      t = now();
      execFileSync('rsync', ['-a', ...rsyncSsh, tree + '/', ...rsyncDest], { stdio: 'ignore' });
      rs.push(now() - t);
    }
    const rsyncMed = median(rs);

    // Where the latency goes, from the daemon's own log lines (the edits only, not the start).
    const editLog = log.slice(log.indexOf('\n', log.search(/^pushed /m)));
    const snapMs = [...editLog.matchAll(/^snapshot \S+: .*\(\d+ changed paths?, .*?, (\d+) ms, /gm)].map((m) => Number(m[1]));
    const pushMs = [...editLog.matchAll(/^pushed \d+ snapshots? to .*, (\d+) ms\)/gm)].map((m) => Number(m[1]));
    const p50 = percentile(lat, 50);
    const p95 = percentile(lat, 95);
    const ok = (cond: boolean) => (cond ? 'yes' : '**no**');
    const rows = [
      [`one changed file on the master, p50 of ${EDITS} edits`, ms(p50), `${ms(rsyncMed)} (median of ${RSYNC_RUNS})`, '', ''],
      ['one changed file on the master, p95', ms(p95), '', '< 250 ms', ok(p95 < 250)],
      [`one changed file on the master after ${IDLE_S} s idle (one edit)`, ms(afterIdle), '', '', ''],
      [`idle CPU over ${IDLE_S} s (utime+stime)`, `${idleCpu.toFixed(2)} %`, '', '< 1 %', ok(idleCpu < 1)],
      [`resident memory (VmRSS) after ${IDLE_S} s idle`, `${(b.rssKiB / 1024).toFixed(1)} MiB`, '', '< 150 MiB', ok(b.rssKiB / 1024 < 150)],
      ['peak resident memory (VmHWM)', `${(b.hwmKiB / 1024).toFixed(1)} MiB`, '', '', ''],
      ['  of which the snapshot (median, as logged)', snapMs.length ? ms(median(snapMs)) : '?', '', '', ''],
      ['  of which the push (median, as logged)', pushMs.length ? ms(median(pushMs)) : '?', '', '', ''],
      ['start: watching the whole tree', ms(watchReady), '', '', ''],
      ['start: first full snapshot on the master', ms(firstPush), `first rsync: ${ms(rsyncFirst)}`, '', ''],
    ];
    const md = [
      '# Daemon benchmark',
      '',
      `Run ${new Date().toISOString()} on ${os.cpus().length} CPU(s) (${os.cpus()[0]?.model ?? '?'}), Node ${process.version}.`,
      `Tree: ${gen.files} files (${(gen.bytes / 1024 ** 2).toFixed(0)} MiB) in ${DIRS} directories. Master: ${masterKind}. pacha.frequency = 0.`,
      `The daemon runs with the systemd unit's environment: ${Object.entries(unitEnv).map(([k, v]) => `${k}=${v}`).join(' ')}.`,
      '',
      markdownTable(['measure', 'pacha daemon', 'rsync -a (second run)', 'target', 'met'], rows),
      `Latency runs from writing one file to the master's refs/heads/main moving (the last step of a push):`,
      `min ${ms(Math.min(...lat))}, max ${ms(Math.max(...lat))}. rsync walks the whole tree on every run to find`,
      `the change; the daemon is told by inotify (${DIRS + 1} directory watches). Every snapshot runs in`,
      `the daemon: the peak is the first full snapshot at start, the idle figure what is left after it`,
      `and the edits (the tree's stat cache, the watcher's names). Load average`,
      `at the end of the run: ${os.loadavg()[0].toFixed(1)} (other work on the machine inflates latency).`,
      '',
    ].join('\n');
    return md;
  } finally {
    daemon?.kill('SIGKILL');
    await sshd?.stop();
    fs.rmSync(work, { recursive: true, force: true });
  }
}

export async function run(): Promise<void> {
  const md = await benchDaemon();
  saveResult(path.join(REPO_DIR, 'bench'), 'daemon', md);
  process.stdout.write(md);
}
export default run;

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) await run();
