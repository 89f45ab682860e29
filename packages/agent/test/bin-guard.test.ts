import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { PACHA_BIN, MASTER_BIN, REPO_DIR } from '@pacha/test-support/cli';

// The bins run by an older Node (a system's `node` on PATH: Debian 12 has 18, this kind of
// machine often 20) re-run themselves under the project's own Node 24, or say in one line what
// they need. Needs an old Node to run them with: the first `node` on the system PATH that is
// older than 24.
const oldNode = ['/usr/bin/node', '/usr/local/bin/node', '/usr/bin/nodejs'].find((n) => {
  const r = spawnSync(n, ['-p', 'process.versions.node'], { encoding: 'utf8' });
  return r.status === 0 && Number(r.stdout.split('.')[0]) < 24;
});
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'pacha-bin-guard-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

describe.skipIf(oldNode === undefined)(`the bins under an old Node (${oldNode ?? 'none found: skipped'})`, () => {
  it("run under the project's Node 24 and keep the exit code", () => {
    const v = spawnSync(oldNode!, [PACHA_BIN, 'version'], { encoding: 'utf8', cwd: tmp });
    expect(v.stderr).toBe('');
    expect(v.stdout).toMatch(/^pacha \d+\.\d+\.\d+ .*node v24\./);
    expect(v.status).toBe(0);
    const bad = spawnSync(oldNode!, [MASTER_BIN, 'no-such-command'], { encoding: 'utf8', cwd: tmp });
    expect(bad.status).toBe(2);
    expect(bad.stderr).toMatch(/^error: /);
  });

  it('say in one line which Node they need when there is no node_modules/node', () => {
    // The bins and their package.json files, without node_modules beside them.
    for (const f of ['packages/agent/bin/pacha.js', 'packages/agent/package.json', 'packages/shared/bin/node-guard.js', 'packages/shared/package.json']) {
      fs.mkdirSync(path.dirname(path.join(tmp, f)), { recursive: true });
      fs.copyFileSync(path.join(REPO_DIR, f), path.join(tmp, f));
    }
    const r = spawnSync(oldNode!, [path.join(tmp, 'packages/agent/bin/pacha.js'), 'version'], { encoding: 'utf8', cwd: tmp });
    expect(r.status).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr.trimEnd().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/^pacha: needs Node\.js 24 or newer, this is v\d+.*npm ci.*\.deb/);
    expect(r.stderr).not.toMatch(/at .*\.js:\d+|ERR_/);
  });
});
