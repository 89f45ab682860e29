// `npm run bench -- packages`: what recording the package manifest costs. Reading and parsing
// this machine's /var/lib/dpkg/status (plus apt's extended_states) and a generated one of 2,000
// packages (target: under 50 ms), the first read in a fresh process (what `pacha snapshot`
// pays) and the cached read of an unchanged database (what each daemon snapshot pays).
import fs from 'node:fs';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { spawnSync } from 'node:child_process';
import { encodePackages } from '@pacha/shared/host/packages-file';
import { parseDpkgStatus, parseExtendedStates, readPackageManifest } from '@pacha/shared/host/packages';
import { generatePackages, writeDpkgDatabase } from '@pacha/test-support/dpkg-fixture';
import { median } from './lib/measure.ts';
import { markdownTable, saveResult } from './lib/table.ts';
import { tempDir } from './lib/tree.ts';

const RUNS = Number(process.env.PACHA_BENCH_RUNS ?? 21);
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

/** The first read in a new process (no JIT warm-up), as `pacha snapshot` pays it. */
function freshProcess(root: string): number {
  const script = `import { readPackageManifest } from ${JSON.stringify(path.join(here, '../packages/shared/src/host/packages.ts'))};` +
    `const t = performance.now(); readPackageManifest(${JSON.stringify(root)}); console.log(performance.now() - t);`;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(r.stderr);
  return Number(r.stdout.trim());
}

export async function run(): Promise<void> {
  const gen = tempDir('packages');
  try {
    writeDpkgDatabase(gen, generatePackages(2000));
    const cases: { label: string; root: string }[] = [];
    if (fs.existsSync('/var/lib/dpkg/status')) cases.push({ label: `this machine (${readPackageManifest('/').manifest?.packages.length} packages, ${(fs.statSync('/var/lib/dpkg/status').size / 1024).toFixed(0)} KiB)`, root: '/' });
    cases.push({ label: `generated, 2,000 packages (${(fs.statSync(path.join(gen, 'var/lib/dpkg/status')).size / 1024).toFixed(0)} KiB)`, root: gen });
    const times = new Map<string, { warm: number[]; fresh: number[]; cached: number[] }>();
    for (const c of cases) times.set(c.label, { warm: [], fresh: [], cached: [] });
    // Alternating between the cases, run by run: the machine is shared, load moves.
    for (let i = 0; i < RUNS; i++) {
      for (const c of cases) {
        const t = times.get(c.label)!;
        t.warm.push(readAndEncode(c.root));
        if (i < 7) t.fresh.push(freshProcess(c.root));
        readPackageManifest(c.root);
        const s = performance.now();
        readPackageManifest(c.root);
        t.cached.push(performance.now() - s);
      }
    }
    const f = (v: number) => `${v < 1 ? v.toFixed(2) : v.toFixed(1)} ms`;
    const rows = cases.map((c) => {
      const t = times.get(c.label)!;
      return [c.label, f(median(t.fresh)), f(median(t.warm)), f(median(t.cached)), '< 50 ms'];
    });
    const table = markdownTable(['dpkg database', 'first read in a new process', 'read again (changed database)', 'unchanged database (cache: 2 stat calls)', 'target'], rows);
    const text = `# bench: packages\n\n${new Date().toISOString()}, medians of ${RUNS} runs (7 for the new processes), cases alternating\n\n${table}\n` +
      'Reading means: read /var/lib/dpkg/status and /var/lib/apt/extended_states, parse them, and build the\n' +
      '`.pacha/packages` text. An unchanged database (same size, mtime and inode of both files) costs a stat per file.\n';
    process.stdout.write(text);
    saveResult(here, 'packages', text);
  } finally {
    fs.rmSync(gen, { recursive: true, force: true });
  }
}
