import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseConfig, type PachaConfig } from '@pacha/shared/config';
import { statePaths, type StatePaths } from '@pacha/shared/state';
import { commitSnapshot, initBareRepo, type FixtureFile } from './git-fixture.ts';

// A host whose local repository is built with native git (so push is tested without pacha's own
// snapshot writer) and a master host tree in a local folder (pacha.host = file://).

export interface PushFixture {
  root: string;
  hostsPath: string;
  config: PachaConfig;
  state: StatePaths;
  masterRepo: string;
  /** Commit a snapshot of `files` generated files (version v) in the local repo. */
  snapshot(files: number, v?: number, extra?: FixtureFile[]): string;
  cleanup(): void;
}

export function fileSet(n: number, v = 0, dirs = 20): FixtureFile[] {
  const out: FixtureFile[] = [];
  for (let i = 0; i < n; i++) {
    const d = i % dirs;
    out.push({ path: `/etc/app/d${d}/f${i}.conf`, type: 'file', content: `file ${i} version ${i === 0 ? v : 0}\n${'x'.repeat(100 + (i % 50))}\n` });
  }
  return out;
}

export function makePushFixture(host = 'web1', extraConfig: Record<string, string> = {}): PushFixture {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'pacha-push-'));
  const hostsPath = path.join(root, 'master', 'hosts');
  fs.mkdirSync(hostsPath, { recursive: true });
  const keys: Record<string, string> = { 'pacha.host': 'file://', 'pacha.hosts.path': hostsPath, 'pacha.hostname': host, 'pacha.state.path': '/var/lib/pacha', ...extraConfig };
  const text = ['[DEFAULT]', ...Object.entries(keys).map(([k, v]) => `${k} = ${v}`)].join('\n');
  const config = parseConfig(text, { file: null, root, env: { HOME: '/root' } });
  const state = statePaths(config.stateDir);
  fs.mkdirSync(state.dir, { recursive: true, mode: 0o700 });
  initBareRepo(state.repo);
  let time = 1_700_000_000;
  return {
    root,
    hostsPath,
    config,
    state,
    masterRepo: path.join(hostsPath, host, 'repo'),
    snapshot(files, v = 0, extra = []) {
      time += 60;
      return commitSnapshot(state.repo, { roots: ['/etc/app'], entries: [...fileSet(files, v), ...extra], time, message: `snapshot v${v}` });
    },
    cleanup: () => fs.rmSync(root, { recursive: true, force: true }),
  };
}

export function gitIn(gitDir: string, args: string[]): string {
  return execFileSync('git', ['--git-dir', gitDir, ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

/** Native git's strictest check; throws with git's output when the repository is damaged. */
export function fsck(gitDir: string): void {
  execFileSync('git', ['--git-dir', gitDir, 'fsck', '--full', '--strict', '--no-dangling'], { stdio: ['ignore', 'pipe', 'pipe'] });
}

export function masterHead(repo: string): string | null {
  try {
    return fs.readFileSync(path.join(repo, 'refs/heads/main'), 'utf8').trim();
  } catch {
    return null;
  }
}

export function packFiles(repo: string): string[] {
  try {
    return fs.readdirSync(path.join(repo, 'objects/pack')).sort();
  } catch {
    return [];
  }
}
