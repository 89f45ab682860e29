// `npm run bench`: every benchmark (floor, snapshot, push, rebuild, daemon), side by side with
// rsync, restic and native git in one run, then docs/benchmarks.md with the machine described.
// `npm run bench -- NAME [NAME...]`: only those (bench/NAME.ts, its exported run()).
// Benchmarks are kept out of the unit tests: they generate large trees under /tmp and take minutes.
import { execSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const here = import.meta.dirname;
const ORDER = ['floor', 'snapshot', 'growth', 'trees', 'push', 'rebuild', 'daemon', 'xattrs', 'packages'];
// A/B scripts run by hand against another checkout (node bench/NAME.ts BASELINE), not from here.
const STANDALONE = ['master-push'];
const available = fs
  .readdirSync(here)
  .filter((f) => f.endsWith('.ts') && f !== 'run.ts' && !STANDALONE.includes(f.slice(0, -3)))
  .map((f) => f.slice(0, -3))
  .sort((a, b) => ORDER.indexOf(a) - ORDER.indexOf(b));
const args = process.argv.slice(2);
// Arguments that are not benchmark names are passed on to each benchmark (e.g. a case letter).
const named = args.filter((a) => /^[a-z][a-z-]{2,}$/.test(a));
for (const name of named) {
  if (!available.includes(name)) {
    process.stderr.write(`unknown benchmark "${name}" (available: ${available.join(', ')}; none = all)\n`);
    process.exit(2);
  }
}
const all = named.length === 0;
const names = all ? available : named;

const started = new Date();
for (const name of names) {
  process.stderr.write(`\n== bench ${name} ==\n`);
  const mod = (await import(path.join(here, `${name}.ts`))) as { run?: (args: string[]) => Promise<unknown> };
  if (typeof mod.run !== 'function') throw new Error(`bench/${name}.ts exports no run()`);
  await mod.run(args);
}
if (all) writeReport();

function version(cmd: string): string {
  try {
    return execSync(cmd, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).split('\n')[0].trim();
  } catch {
    return 'not installed';
  }
}

/** docs/benchmarks.md: the machine, then each benchmark's table as it wrote it in bench/results/. */
function writeReport(): void {
  const cpu = os.cpus();
  const machine = [
    `- run: ${started.toISOString()} to ${new Date().toISOString()}`,
    `- CPU: ${cpu.length} × ${cpu[0]?.model ?? 'unknown'}; memory ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB; kernel ${os.release()}`,
    `- disk: ${version(`df -hT ${os.tmpdir()} | tail -1 | awk '{print $2", "$3" total, "$5" free"}'`)} (benchmark data under ${os.tmpdir()})`,
    `- node ${process.version}; ${version('git --version')}; ${version('rsync --version')}; ${version('restic version')}; ${version('ssh -V 2>&1')}`,
    `- load average at the end: ${os.loadavg().map((l) => l.toFixed(2)).join(', ')}`,
  ];
  const sections = names
    .map((n) => path.join(here, 'results', `${n}.md`))
    .filter((f) => fs.existsSync(f))
    .map((f) => fs.readFileSync(f, 'utf8').trim().replace(/^# /, '## '));
  const text = [
    '# Benchmarks',
    '',
    'Produced by `npm run bench` (bench/run.ts): every tool runs side by side in one run on the same',
    'generated data, over one OpenSSH sshd on loopback. Medians unless said otherwise. Regenerate',
    'with `npm run bench`; a single benchmark with `npm run bench -- NAME`. The A/B comparisons',
    'against a baseline checkout made while each change was built are in',
    '[benchmarks-development.md](benchmarks-development.md).',
    '',
    '## The machine',
    '',
    ...machine,
    '',
    ...sections.flatMap((s) => [s, '']),
  ].join('\n');
  const out = path.join(here, '..', 'docs', 'benchmarks.md');
  fs.writeFileSync(out, text);
  process.stderr.write(`\nwrote ${out}\n`);
}
