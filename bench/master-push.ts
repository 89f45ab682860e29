// A/B: the first push of a 10,000-file snapshot (1-8 KiB files in 200 dirs) to the embedded
// master, this checkout's agent and master against another checkout's (the baseline), runs
// alternating so both see the same machine load (medians):
//   node bench/master-push.ts /path/to/baseline-checkout [runs] [--agent-only]
// --agent-only: both agents push to the baseline's master, so only the agent differs.
// The baseline checkout needs its node_modules (npm ci). Generated data under /tmp, removed after.
import fs from 'node:fs';
import path from 'node:path';
import { PACHA_BIN, MASTER_BIN } from '@pacha/test-support/cli';
import { makeTestHost } from '@pacha/test-support/host';
import { embeddedTarget, startMaster, writeAgentConfig } from '@pacha/test-support/master';
import { fmtMs, median, runProc } from './lib/measure.ts';
import { generateTree, tempDir } from './lib/tree.ts';

const baseline = process.argv[2];
const RUNS = Number(process.argv[3] ?? 5);
const agentOnly = process.argv.includes('--agent-only');
if (!baseline || !fs.existsSync(path.join(baseline, 'packages/master/bin/pacha-master.js'))) {
  process.stderr.write('usage: node bench/master-push.ts BASELINE-CHECKOUT [runs]\n');
  process.exit(2);
}
const base = tempDir('master-push');
const variants = [
  { name: 'this checkout', pacha: PACHA_BIN, master: MASTER_BIN },
  { name: 'baseline', pacha: path.join(baseline, 'packages/agent/bin/pacha.js'), master: path.join(baseline, 'packages/master/bin/pacha-master.js') },
];
try {
  const host = makeTestHost({ name: 'bench', tmpDir: base });
  const masters = [];
  const knownHosts: string[] = [];
  for (const v of variants) {
    const m = await startMaster({ hosts: ['bench'], tmpDir: base, command: [process.execPath, agentOnly ? variants[1].master : v.master] });
    masters.push(m);
    const keys = writeAgentConfig(host, embeddedTarget(m));
    // Each master has its own client key and host key: keep one of each per variant.
    fs.copyFileSync(host.p('/etc/pacha/id_ed25519'), host.p(`/etc/pacha/id-${masters.length}`));
    knownHosts.push(m.knownHostsLine);
    const conf = host.p(`/etc/pacha-${masters.length}.conf`);
    const own = { ...keys, 'pacha.ssh.key': `/etc/pacha/id-${masters.length}` };
    fs.writeFileSync(conf, ['[DEFAULT]', 'pacha.hostname = bench', ...Object.entries(own).map(([k, val]) => `${k} = ${val}`)].join('\n') + '\n');
  }
  fs.writeFileSync(host.p('/etc/pacha/known_hosts'), knownHosts.join('\n') + '\n');
  generateTree(host.p('/srv/data'), { files: 10_000, dirs: 200, minSize: 1024, maxSize: 8192 });
  await runProc(process.execPath, [PACHA_BIN, 'watch', '/srv/data'], { env: host.env });
  await runProc(process.execPath, [PACHA_BIN, 'snapshot'], { env: host.env });
  const times: number[][] = variants.map(() => []);
  let bytes = 0;
  for (let i = 0; i < RUNS; i++) {
    const order = i % 2 === 0 ? [0, 1] : [1, 0];
    for (const k of order) {
      fs.rmSync(path.join(masters[k].hostDir('bench'), 'repo'), { recursive: true, force: true });
      const r = await runProc(process.execPath, [variants[k].pacha, 'push', '--json'], { env: { ...host.env, PACHA_CONFIG: host.p(`/etc/pacha-${k + 1}.conf`) } });
      times[k].push(r.ms);
      bytes = JSON.parse(r.stdout).bytes;
    }
  }
  for (const m of masters) await m.stop();
  process.stdout.write(`first push of 10,000 files (${(bytes / 1048576).toFixed(1)} MiB pack) to the embedded master${agentOnly ? " (the baseline's, for both agents)" : ''}, ${RUNS} runs each, alternating:\n`);
  for (const [k, v] of variants.entries()) process.stdout.write(`  ${v.name}: median ${fmtMs(median(times[k]))} (${times[k].map((t) => Math.round(t)).join(', ')} ms)\n`);
  process.stdout.write(`  ratio this/baseline: ${(median(times[0]) / median(times[1])).toFixed(3)}\n`);
} finally {
  fs.rmSync(base, { recursive: true, force: true });
}
