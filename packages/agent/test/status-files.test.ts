import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { makeTestHost, type TestHost } from '@pacha/test-support/host';
import { git } from './daemon-harness.ts';

// The agent is the one writer of status.json and report.json: `pacha snapshot` and `pacha push`
// record what the library returned, a failed push its error and what waits for the master.

let host: TestHost | undefined;
let masterDir: string | undefined;
afterEach(() => {
  host?.cleanup();
  if (masterDir) fs.rmSync(masterDir, { recursive: true, force: true });
  host = undefined;
  masterDir = undefined;
});

const readJson = (file: string) => JSON.parse(fs.readFileSync(file, 'utf8'));

describe('status files written by the commands', () => {
  it('records snapshots, a failed push with what is pending, then the push that sends it all', async () => {
    masterDir = fs.mkdtempSync(path.join(os.tmpdir(), 'pacha-master-'));
    const hosts = path.join(masterDir, 'hosts');
    // The master's folder is a file: pushes fail until it becomes a folder.
    fs.writeFileSync(hosts, 'not a folder');
    const h = (host = makeTestHost({ config: { 'pacha.host': 'file://', 'pacha.hosts.path': hosts, 'pacha.watch': '/etc/app' } }));
    fs.mkdirSync(h.p('/etc/app'), { recursive: true });
    const status = () => readJson(h.p('/var/lib/pacha/status.json'));
    const report = () => readJson(h.p('/var/lib/pacha/report.json'));
    const heads: string[] = [];
    for (let i = 0; i < 3; i++) {
      fs.writeFileSync(h.p('/etc/app/a.conf'), `version ${i}\n`);
      const r = await h.pacha(['snapshot']);
      expect(r.code, r.stderr).toBe(0);
      heads.push(git(h.p('/var/lib/pacha/repo'), ['rev-parse', 'refs/heads/main']));
      expect(status().lastSnapshot).toMatchObject({ commit: heads[i], summary: { total: 2 } });
    }
    expect(Object.keys(report().snapshot.phases)).toEqual(expect.arrayContaining(['load', 'scan', 'hash', 'write', 'commit']));
    expect(report().snapshot).toMatchObject({ commit: heads[2], files: 2 });

    const down = await h.pacha(['push']);
    expect(down.code).toBe(1);
    expect(status()).toMatchObject({ pending: 3, lastError: { operation: 'push', message: expect.stringContaining(hosts) } });
    expect(status().lastPush).toBeUndefined();

    fs.rmSync(hosts);
    fs.mkdirSync(hosts);
    const up = await h.pacha(['push']);
    expect(up.code, up.stderr).toBe(0);
    expect(status()).toMatchObject({ pending: 0, lastError: null, lastPush: { commit: heads[2], commits: 3 } });
    expect(report().push).toMatchObject({ commits: 3 });
    expect(report().push.bytes).toBeGreaterThan(0);
    expect(Object.keys(report().push.phases)).toEqual(expect.arrayContaining(['pack', 'upload', 'ref']));
    // A snapshot with nothing new keeps the last commit in status.json; the report says so.
    expect((await h.pacha(['snapshot'])).stdout).toMatch(/^no changes$/m);
    expect(status().lastSnapshot.commit).toBe(heads[2]);
    expect(report().snapshot.commit).toBeNull();
  });

  it('a torn status.json or report.json (written without fsync) is written whole again by the next step', async () => {
    const h = (host = makeTestHost({ config: { 'pacha.watch': '/etc/app' } }));
    fs.mkdirSync(h.p('/etc/app'), { recursive: true });
    fs.writeFileSync(h.p('/etc/app/a.conf'), 'a\n');
    expect((await h.pacha(['snapshot'])).code).toBe(0);
    fs.writeFileSync(h.p('/var/lib/pacha/status.json'), '{"lastSnapshot": {"comm');
    fs.writeFileSync(h.p('/var/lib/pacha/report.json'), '');
    fs.writeFileSync(h.p('/etc/app/a.conf'), 'b\n');
    expect((await h.pacha(['snapshot'])).code).toBe(0);
    const head = git(h.p('/var/lib/pacha/repo'), ['rev-parse', 'refs/heads/main']);
    expect(readJson(h.p('/var/lib/pacha/status.json')).lastSnapshot).toMatchObject({ commit: head });
    expect(readJson(h.p('/var/lib/pacha/report.json')).snapshot).toMatchObject({ commit: head });
  });
});
