import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { makeTestHost, type TestHost } from '@pacha/test-support/host';
import { freePort } from '@pacha/test-support/sshd';

// pacha.metrics.path: the agent's node_exporter textfile, rewritten atomically after every
// snapshot and push. Read here the way node_exporter reads it: HELP and TYPE before samples.
const hosts: TestHost[] = [];
const dirs: string[] = [];
afterAll(() => {
  for (const h of hosts) h.cleanup();
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
});

/** name{labels} -> value; checks every sample follows its # TYPE line. */
function parse(text: string): Map<string, number> {
  const out = new Map<string, number>();
  const typed = new Set<string>();
  for (const line of text.trimEnd().split('\n')) {
    const t = /^# TYPE ([a-z_:]+) (gauge|counter)$/.exec(line);
    if (t) typed.add(t[1]);
    if (line.startsWith('#')) continue;
    const m = /^([a-z_:]+)(\{[^}]*\})? (\S+)$/.exec(line);
    expect(m, line).not.toBeNull();
    expect(typed.has(m![1]), `${m![1]} has no # TYPE line before it`).toBe(true);
    out.set(m![1] + (m![2] ?? ''), Number(m![3]));
  }
  return out;
}

describe('the agent metrics textfile', () => {
  it('follows snapshots, pushes and a failed push', async () => {
    const base = fs.mkdtempSync(path.join(os.tmpdir(), 'pacha-metrics-hosts-'));
    dirs.push(base);
    const config = { 'pacha.host': 'file://', 'pacha.hosts.path': base, 'pacha.metrics.path': '/var/lib/node-exporter/pacha.prom' };
    const h = makeTestHost({ name: 'metered', config });
    hosts.push(h);
    fs.mkdirSync(h.p('/var/lib/node-exporter'), { recursive: true });
    fs.mkdirSync(h.p('/etc/app'), { recursive: true });
    fs.writeFileSync(h.p('/etc/app/a.conf'), 'a = 1\n');
    const file = h.p('/var/lib/node-exporter/pacha.prom');
    const read = () => parse(fs.readFileSync(file, 'utf8'));

    expect((await h.pacha(['watch', '/etc/app'])).code).toBe(0);
    const before = Date.now() / 1000;
    expect((await h.pacha(['snapshot'])).code).toBe(0);
    let m = read();
    expect(m.get('pacha_agent_info{version="0.1.0"}')).toBe(1);
    expect(m.get('pacha_agent_last_snapshot_timestamp_seconds')).toBeGreaterThanOrEqual(Math.floor(before));
    expect(m.get('pacha_agent_last_snapshot_duration_seconds')).toBeGreaterThan(0);
    expect(m.get('pacha_agent_last_snapshot_read_bytes')).toBe(6);
    expect(m.get('pacha_agent_pending_snapshots')).toBe(1);
    expect(m.has('pacha_agent_last_push_timestamp_seconds')).toBe(false);
    expect(fs.statSync(file).mode & 0o777).toBe(0o644); // node_exporter runs as another user

    expect((await h.pacha(['push'])).code).toBe(0);
    m = read();
    expect(m.get('pacha_agent_pending_snapshots')).toBe(0);
    expect(m.get('pacha_agent_last_push_timestamp_seconds')).toBeGreaterThanOrEqual(Math.floor(before));
    expect(m.get('pacha_agent_last_push_bytes')).toBeGreaterThan(0);
    expect(m.get('pacha_agent_last_push_failed')).toBe(0);

    // The master goes away: the snapshot waits, the failure shows.
    h.writeConfig({ ...config, 'pacha.host': '127.0.0.1', 'pacha.ssh.port': await freePort() });
    fs.writeFileSync(h.p('/etc/app/a.conf'), 'a = 2\n');
    expect((await h.pacha(['snapshot'])).code).toBe(0);
    expect((await h.pacha(['push'])).code).toBe(1);
    m = read();
    expect(m.get('pacha_agent_pending_snapshots')).toBe(1);
    expect(m.get('pacha_agent_last_push_failed')).toBe(1);
    expect(m.get('pacha_agent_last_error_timestamp_seconds{operation="push"}')).toBeGreaterThanOrEqual(Math.floor(before));
    // Written by rename: no temporary file is left beside it.
    expect(fs.readdirSync(h.p('/var/lib/node-exporter'))).toEqual(['pacha.prom']);
  });

  it('is not written without pacha.metrics.path', async () => {
    const h = makeTestHost({ name: 'unmetered' });
    hosts.push(h);
    fs.mkdirSync(h.p('/etc/app'), { recursive: true });
    fs.writeFileSync(h.p('/etc/app/a.conf'), 'a = 1\n');
    expect((await h.pacha(['watch', '/etc/app'])).code).toBe(0);
    expect((await h.pacha(['snapshot'])).code).toBe(0);
    const prom = (dir: string): string[] =>
      fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? prom(path.join(dir, e.name)) : e.name.endsWith('.prom') ? [e.name] : []));
    expect(prom(h.root)).toEqual([]);
  });
});
