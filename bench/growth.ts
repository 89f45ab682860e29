// Repository growth per one-line edit, pacha against native git on the same tree (medians):
// a tree of 6,000 and one of 100,000 paths (generated: config-like files, 50 to a directory),
// plus a copy of this machine's /etc. One snapshot (and one `git add -A && git commit`) of the
// whole tree, untimed; then, RUNS times, one line of one file is rewritten in place and both
// take the change. Growth is the bytes the objects directory gained: pacha's packs with their
// indexes, git's loose objects (zlib, as `git commit` writes them).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { PACHA_BIN } from '@pacha/test-support/cli';
import { median, runProc, sh } from './lib/measure.ts';
import { generateTree, removeTree, tempDir } from './lib/tree.ts';
import { markdownTable, saveResult } from './lib/table.ts';

const benchDir = path.dirname(fileURLToPath(import.meta.url));
const RUNS = Number(process.env.PACHA_BENCH_RUNS ?? 5);
const gitEnv = { GIT_AUTHOR_NAME: 'b', GIT_AUTHOR_EMAIL: 'b@b', GIT_COMMITTER_NAME: 'b', GIT_COMMITTER_EMAIL: 'b@b' };

function bytesUnder(dir: string): number {
  let n = 0;
  for (const e of fs.readdirSync(dir, { withFileTypes: true, recursive: true })) {
    if (e.isFile()) n += fs.statSync(path.join(e.parentPath, e.name)).size;
  }
  return n;
}

function countPaths(dir: string): number {
  return fs.readdirSync(dir, { recursive: true }).length + 1;
}

/** Rewrite one line in the middle of a text file, keeping its size (a value edited in place). */
function editOneLine(file: string, i: number): void {
  const lines = fs.readFileSync(file, 'latin1').split('\n');
  const k = Math.floor(lines.length / 2);
  const tag = String(i % 10);
  lines[k] = lines[k].length > 0 ? lines[k].slice(0, -1) + tag : tag;
  fs.writeFileSync(file, lines.join('\n'), 'latin1');
}

/** The largest regular text-like file of the tree under 64 KiB at depth >= 2 (so trees above it change too). */
function pickFile(dir: string): string {
  let best = '';
  let size = -1;
  for (const e of fs.readdirSync(dir, { withFileTypes: true, recursive: true })) {
    if (!e.isFile()) continue;
    const p = path.join(e.parentPath, e.name);
    const rel = path.relative(dir, p);
    const st = fs.statSync(p);
    if (rel.split('/').length >= 2 && st.size < 65536 && st.size > size && (st.mode & 0o444) !== 0 && /\.(conf|cfg|txt|list|sh)$|^f\d+/.test(e.name)) {
      best = rel;
      size = st.size;
    }
  }
  if (best === '') throw new Error(`no file to edit under ${dir}`);
  return best;
}

async function measure(name: string, fill: (data: string) => void, rows: string[][]): Promise<void> {
  const base = tempDir('growth');
  try {
    const root = path.join(base, 'host');
    const data = path.join(root, 'data');
    fs.mkdirSync(path.join(root, 'etc'), { recursive: true });
    fs.writeFileSync(path.join(root, 'etc/pacha.conf'), '[DEFAULT]\npacha.hostname = bench\npacha.watch = /data\npacha.max_file_size = 4GiB\n');
    fs.copyFileSync('/etc/passwd', path.join(root, 'etc/passwd'));
    fs.copyFileSync('/etc/group', path.join(root, 'etc/group'));
    fill(data);
    const paths = countPaths(data);
    const gdir = path.join(base, 'git');
    sh(`cp -a ${JSON.stringify(data)} ${JSON.stringify(gdir)}`);
    // No background auto-gc: it would repack the objects while they are being counted.
    sh('git init -q && git config gc.auto 0', gdir);
    const env = { PACHA_ROOT_DIR: root, PACHA_CONFIG: '' };
    const objects = path.join(root, 'var/lib/pacha/repo/objects');
    const gitObjects = path.join(gdir, '.git/objects');
    await runProc(process.execPath, [PACHA_BIN, 'snapshot'], { env });
    await runProc('sh', ['-c', 'git add -A && git commit -q -m first'], { cwd: gdir, env: gitEnv });
    const file = pickFile(data);
    const p: number[] = [];
    const g: number[] = [];
    for (let i = 0; i < RUNS; i++) {
      let before = bytesUnder(objects);
      editOneLine(path.join(data, file), i);
      const r = JSON.parse((await runProc(process.execPath, [PACHA_BIN, 'snapshot', '--json'], { env })).stdout) as { commit: string | null };
      if (r.commit === null) throw new Error('pacha saw no change');
      p.push(bytesUnder(objects) - before);
      before = bytesUnder(gitObjects);
      editOneLine(path.join(gdir, file), i);
      await runProc('sh', ['-c', 'git add -A && git commit -q -m edit'], { cwd: gdir, env: gitEnv });
      g.push(bytesUnder(gitObjects) - before);
    }
    sh(`git --git-dir ${JSON.stringify(path.join(root, 'var/lib/pacha/repo'))} fsck --full --strict`);
    const kb = (n: number) => `${(n / 1024).toFixed(1)} KiB`;
    rows.push([`${name}: ${paths.toLocaleString('en')} paths, one line of /data/${file} rewritten`, kb(median(p)), kb(median(g)), (median(p) / median(g)).toFixed(2), '<= 2.00']);
  } finally {
    removeTree(base);
  }
}

export async function run(): Promise<void> {
  const rows: string[][] = [];
  await measure('generated', (d) => generateTree(d, { files: 5_880, dirs: 120, minSize: 200, maxSize: 4096 }), rows);
  await measure('generated', (d) => generateTree(d, { files: 98_000, dirs: 2_000, minSize: 200, maxSize: 2048 }), rows);
  await measure("this machine's /etc", (d) => sh(`cp -a /etc ${JSON.stringify(d)} 2>/dev/null || true`), rows);
  const table = markdownTable(['repository growth per one-line edit', 'pacha', 'native git', 'pacha / git', 'target'], rows);
  const text = [
    '# Growth',
    '',
    `${new Date().toISOString()}, median of ${RUNS} edits; ${os.cpus().length} CPUs.`,
    '',
    table,
    "pacha: the bytes its objects directory gained per snapshot (a pack and its .idx: the file's blob, its directory's",
    '`.pacha`, the trees on its path, the commit). git: the loose objects `git add -A && git commit` wrote for the same',
    'edit (blob, trees, commit). Before format 2, pacha stored the whole `.pacha/metadata` again with each snapshot.',
    '',
  ].join('\n');
  process.stdout.write(table);
  process.stderr.write(`saved ${saveResult(benchDir, 'growth', text)}\n`);
}
