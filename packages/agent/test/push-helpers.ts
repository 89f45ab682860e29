import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { makeTestHost, type TestHost } from '@pacha/test-support/host';
import { commitSnapshot, initBareRepo, type FixtureFile } from '@pacha/test-support/git-fixture';

// Agent hosts for the push, crash and fleet tests: a fake host under a temporary PACHA_ROOT_DIR
// whose local repository (state dir /var/lib/pacha) is filled with native git, so these tests
// exercise `pacha push` on its own.

export const STATE_REPO = '/var/lib/pacha/repo';

export interface AgentHost extends TestHost {
  repo: string;
  /** Commit a snapshot: `files` generated files, file 0 at version v, plus `extra`. */
  snapshot(files: number, v: number, extra?: FixtureFile[]): string;
}

let clock = 1_700_000_000;

export function makeAgentHost(name: string, config: Record<string, string | number> = {}, tmpDir?: string): AgentHost {
  const h = makeTestHost({ name, config, tmpDir });
  const repo = h.p(STATE_REPO);
  fs.mkdirSync(path.dirname(repo), { recursive: true, mode: 0o700 });
  initBareRepo(repo);
  return {
    ...h,
    repo,
    snapshot(files, v, extra = []) {
      clock += 60;
      const entries: FixtureFile[] = [];
      for (let i = 0; i < files; i++) entries.push({ path: `/etc/${name}/d${i % 10}/f${i}.conf`, type: 'file', content: `${name} file ${i} v${i === 0 ? v : 0}\n` });
      return commitSnapshot(repo, { roots: [`/etc/${name}`], entries: [...entries, ...extra], time: clock, message: `snapshot ${v}` });
    },
  };
}

// The master's repository, checked as in the library's push tests.
export { fsck as fsckOk, masterHead as refOf } from '@pacha/test-support/push';

export function commitCount(repo: string): number {
  return Number(execFileSync('git', ['--git-dir', repo, 'rev-list', '--count', 'main'], { encoding: 'utf8' }).trim());
}
