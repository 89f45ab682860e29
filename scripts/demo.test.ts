import { describe, expect, it } from 'vitest';
import fs from 'node:fs';
import os from 'node:os';
import { runNode, REPO_DIR } from '@pacha/test-support/cli';

// The README's first command must keep working: run the whole demo as a newcomer would.
describe('npm run demo', () => {
  it('snapshots a host, pushes it to the embedded master, rebuilds it and proves it identical', async () => {
    const before = new Set(fs.readdirSync(os.tmpdir()).filter((n) => n.startsWith('pacha-demo-')));
    const r = await runNode(`${REPO_DIR}/scripts/demo.ts`, [], { timeoutMs: 60_000 });
    expect(r.code, r.stdout + r.stderr).toBe(0);
    for (let i = 1; i <= 8; i++) expect(r.stdout).toContain(`[${i}/8]`);
    expect(r.stdout).toMatch(/pushed 1 snapshot/);
    expect(r.stdout).toMatch(process.getuid?.() === 0 ? /accounts: created group app, user app/ : /accounts not created: groupadd and useradd need root/);
    expect(r.stdout).toMatch(/Rebuilt web1 at [0-9a-f]{12}/);
    expect(r.stdout).toMatch(/identical: \d+ paths/);
    // As root, a file capability goes out and comes back (getcap before and after).
    if (process.getuid?.() === 0) {
      expect(r.stdout).toMatch(/getcap before: \/web1\/usr\/local\/bin\/ping-helper cap_net_raw=ep/);
      expect(r.stdout).toMatch(/getcap after: +\/web1-rebuilt\/usr\/local\/bin\/ping-helper cap_net_raw=ep/);
    }
    // It cleans up after itself.
    const after = fs.readdirSync(os.tmpdir()).filter((n) => n.startsWith('pacha-demo-') && !before.has(n));
    expect(after).toEqual([]);
  });
});
