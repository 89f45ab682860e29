import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import { loadConfig } from '../src/config.ts';
import { silentLogger } from '../src/log.ts';
import { ensureStateDir, statePaths } from '../src/state.ts';
import type { SnapshotEnv } from '../src/snapshot/engine.ts';
import { makeTestHost, type TestHost } from '@pacha/test-support/host';

// A fake host with a watched tree and an in-process snapshot environment for it.
export interface SnapHost extends TestHost {
  env2(): SnapshotEnv;
  repo(): string;
  git(args: string[]): string;
}

export function snapHost(config: Record<string, string | number> = {}): SnapHost {
  const h = makeTestHost({ config });
  fs.mkdirSync(h.p('/etc'), { recursive: true });
  fs.writeFileSync(h.p('/etc/passwd'), 'root:x:0:0:root:/root:/bin/sh\nalice:x:1000:1000::/home/alice:/bin/sh\nnobody:x:65534:65534::/:/bin/false\n');
  fs.writeFileSync(h.p('/etc/group'), 'root:x:0:\nstaff:x:1000:\nnogroup:x:65534:\n');
  const env2 = (): SnapshotEnv => {
    const cfg = loadConfig({ env: h.env });
    ensureStateDir(cfg.stateDir);
    return { config: cfg, state: statePaths(cfg.stateDir), log: silentLogger };
  };
  const repo = () => env2().state.repo;
  return {
    ...h,
    env2,
    repo,
    git: (args) => execFileSync('git', ['--git-dir', repo(), ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }),
  };
}

/** Wait past the filesystem clock tick so that fresh files are not "racily clean". */
export function settle(ms = 30): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
