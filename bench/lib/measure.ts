import { spawn, spawnSync } from 'node:child_process';

// Timing helpers shared by the benchmarks: medians over runs, wall time of a child process,
// peak memory of a child process.

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** Run fn `runs` times (after `setup` each time, untimed) and return every duration in ms. */
export async function timeRuns(runs: number, fn: () => Promise<void> | void, setup?: () => Promise<void> | void): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < runs; i++) {
    if (setup) await setup();
    const t = performance.now();
    await fn();
    out.push(performance.now() - t);
  }
  return out;
}

export interface ProcResult {
  code: number;
  stdout: string;
  stderr: string;
  ms: number;
  /** Peak resident set size in KiB (from /usr/bin/time -v when asked). */
  maxRssKiB?: number;
  /** CPU time (user + system) in ms, from the same /usr/bin/time -v: less disturbed by a busy machine than wall time. */
  cpuMs?: number;
}

/** Run a command to completion; throws with its output when it fails. */
export function runProc(cmd: string, args: string[], opts: { env?: NodeJS.ProcessEnv; cwd?: string; peakMemory?: boolean } = {}): Promise<ProcResult> {
  const argv = opts.peakMemory ? ['/usr/bin/time', ['-v', cmd, ...args]] : [cmd, args];
  return new Promise((resolve, reject) => {
    const t = performance.now();
    const child = spawn(argv[0] as string, argv[1] as string[], { env: { ...process.env, ...opts.env }, cwd: opts.cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code) => {
      const ms = performance.now() - t;
      const r: ProcResult = { code: code ?? 1, stdout, stderr, ms };
      const m = /Maximum resident set size \(kbytes\): (\d+)/.exec(stderr);
      if (m) r.maxRssKiB = Number(m[1]);
      const u = /User time \(seconds\): ([\d.]+)/.exec(stderr);
      const sy = /System time \(seconds\): ([\d.]+)/.exec(stderr);
      if (u && sy) r.cpuMs = (Number(u[1]) + Number(sy[1])) * 1000;
      if (r.code !== 0) reject(new Error(`${cmd} ${args.join(' ')} exited ${r.code}:\n${stdout}${stderr}`));
      else resolve(r);
    });
  });
}

export function sh(script: string, cwd?: string): void {
  const r = spawnSync('sh', ['-c', script], { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
  if (r.status !== 0) throw new Error(`sh -c ${script}: ${r.stderr}`);
}

export function fmtMs(ms: number): string {
  return ms >= 10_000 ? `${(ms / 1000).toFixed(1)} s` : `${Math.round(ms)} ms`;
}
