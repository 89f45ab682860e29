import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { makeTestHost, type TestHost } from '@pacha/test-support/host';
import { formatReport } from '../src/status/report-view.ts';
import { killAll, startDaemon } from './daemon-harness.ts';

let host: TestHost | undefined;
let masterDir: string | undefined;
afterEach(() => {
  killAll();
  host?.cleanup();
  if (masterDir) fs.rmSync(masterDir, { recursive: true, force: true });
  host = undefined;
  masterDir = undefined;
});

describe('pacha report', () => {
  it('formats each operation phase by phase with shares, totals and sizes', () => {
    const text = formatReport({
      snapshot: { time: '2026-01-01T00:00:00Z', phases: { scan: 12, hash: 30, write: 8, commit: 50 }, bytes: 2048, files: 3, route: 'full' },
      push: { phases: { connect: 1500, upload: 500 }, bytes: 5 * 1024 * 1024, objects: 7 },
    });
    const lines = text.split('\n');
    expect(lines[0]).toMatch(/^operation +phase +time +share$/);
    expect(text).toMatch(/^snapshot +scan +12 ms +12%$/m);
    expect(text).toMatch(/^ +commit +50 ms +50%$/m);
    expect(text).toMatch(/^ +total +100 ms$/m);
    expect(text).toMatch(/^push +connect +1.50 s +75%$/m);
    expect(text).toMatch(/^rebuild +\(none yet\)$/m);
    expect(text).toContain('snapshot at 2026-01-01T00:00:00Z: 3 files, 2.0 KiB, full route');
    expect(text).toContain('push: 5.0 MiB, 7 objects');
  });

  it('shows the phases the daemon\'s last snapshot and push recorded; --json gives the raw entries', async () => {
    masterDir = fs.mkdtempSync(path.join(os.tmpdir(), 'pacha-master-'));
    host = makeTestHost({ config: { 'pacha.host': 'file://', 'pacha.hosts.path': masterDir, 'pacha.frequency': 0, 'pacha.watch': '/etc/app' } });
    fs.mkdirSync(host.p('/etc/app'), { recursive: true });
    for (let i = 0; i < 20; i++) fs.writeFileSync(host.p(`/etc/app/f${i}`), 'x'.repeat(100 * i));
    let r = await host.pacha(['report']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^snapshot +\(none yet\)$/m);
    const d = startDaemon(host);
    await d.waitLog(/^pushed 1 snapshot/);
    expect((await d.stop()).code).toBe(0);
    r = await host.pacha(['report', '--json']);
    expect(r.code).toBe(0);
    const rep = JSON.parse(r.stdout);
    expect(Object.keys(rep.snapshot.phases)).toEqual(expect.arrayContaining(['scan', 'hash']));
    expect(rep.snapshot.files).toBeGreaterThanOrEqual(20);
    expect(rep.push.bytes).toBeGreaterThan(0);
    expect(Object.keys(rep.push.phases)).toEqual(expect.arrayContaining(['pack', 'upload']));
    r = await host.pacha(['report']);
    expect(r.stdout).toMatch(/^snapshot +load +\d+ ms/m);
    expect(r.stdout).toMatch(/^push +\w+ +\d+ ms/m);
  });
});
