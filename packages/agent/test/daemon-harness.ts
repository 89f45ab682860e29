import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { PACHA_NAME } from '@pacha/shared/format/names';
import { PACHA_BIN, REPO_DIR } from '@pacha/test-support/cli';
import type { TestHost } from '@pacha/test-support/host';

// Runs `pacha daemon` as a real background process of a test host and reads the master's
// repository with native git. Shared by the daemon, status and report tests.

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function until<T>(what: string, fn: () => T | undefined | false | Promise<T | undefined | false>, timeoutMs = 20_000): Promise<T> {
  const end = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}${last ? ` (last error: ${(last as Error).message})` : ''}`);
    await sleep(50);
  }
}

export interface DaemonProc {
  proc: ChildProcess;
  pid: number;
  /** Everything written to stderr so far. */
  stderr(): string;
  waitLog(re: RegExp, timeoutMs?: number): Promise<string>;
  /** Count of stderr lines matching re. */
  count(re: RegExp): number;
  /** Send a signal and wait for the exit. */
  stop(signal?: NodeJS.Signals): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

const running = new Set<ChildProcess>();

export function startDaemon(host: TestHost, opts: { args?: string[]; env?: NodeJS.ProcessEnv } = {}): DaemonProc {
  const proc = spawn(process.execPath, [PACHA_BIN, 'daemon', ...(opts.args ?? [])], {
    env: { ...process.env, ...host.env, ...opts.env },
    cwd: REPO_DIR,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  running.add(proc);
  let err = '';
  proc.stderr!.on('data', (d) => (err += d));
  proc.stdout!.on('data', (d) => (err += d));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    proc.on('exit', (code, signal) => {
      running.delete(proc);
      resolve({ code, signal });
    }),
  );
  return {
    proc,
    pid: proc.pid!,
    stderr: () => err,
    count: (re) => err.split('\n').filter((l) => re.test(l)).length,
    waitLog: (re, timeoutMs = 20_000) =>
      until(`daemon log ${re} (log so far:\n${err})`, () => {
        const m = err.split('\n').find((l) => re.test(l));
        return m;
      }, timeoutMs),
    stop: async (signal = 'SIGTERM') => {
      proc.kill(signal);
      const timer = setTimeout(() => proc.kill('SIGKILL'), 15_000);
      const r = await exited;
      clearTimeout(timer);
      return r;
    },
    exited,
  };
}

/** Kill whatever a failed test left running. */
export function killAll(): void {
  for (const p of running) p.kill('SIGKILL');
}

export function git(gitDir: string, args: string[]): string {
  return execFileSync('git', ['--git-dir', gitDir, ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim();
}

export function tryGit(gitDir: string, args: string[]): string | undefined {
  try {
    return git(gitDir, args);
  } catch {
    return undefined;
  }
}

/** The git blob id of a file's content. */
export function blobId(file: string): string {
  const data = fs.readFileSync(file);
  return crypto.createHash('sha1').update(`blob ${data.length}\0`).update(data).digest('hex');
}

/** Blob ids of every regular file under a host dir, keyed by tree path (no leading slash). */
export function diskBlobs(host: TestHost, hostDir: string): Map<string, string> {
  const out = new Map<string, string>();
  const walk = (hp: string) => {
    for (const e of fs.readdirSync(host.p(hp), { withFileTypes: true })) {
      const child = path.posix.join(hp, e.name);
      if (e.isDirectory()) walk(child);
      else if (e.isFile()) out.set(child.slice(1), blobId(host.p(child)));
    }
  };
  walk(hostDir);
  return out;
}

/** Blob ids of the files under a tree prefix in a commit of a repository (not the metadata files format 2 keeps per directory). */
export function repoBlobs(gitDir: string, rev: string, prefix: string): Map<string, string> {
  const out = new Map<string, string>();
  const text = git(gitDir, ['ls-tree', '-r', '-z', rev, '--', prefix]);
  for (const rec of text.split('\0')) {
    if (!rec) continue;
    const [meta, name] = rec.split('\t');
    const [, type, id] = meta.split(' ');
    if (type === 'blob' && path.posix.basename(name) !== PACHA_NAME) out.set(name, id);
  }
  return out;
}

export function writeWatchList(host: TestHost, paths: string[]): void {
  const dir = host.p('/var/lib/pacha');
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  fs.writeFileSync(path.join(dir, 'watched'), paths.map((p) => p + '\n').join(''));
}
