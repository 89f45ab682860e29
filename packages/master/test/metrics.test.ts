import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import ssh2 from 'ssh2';
import type { SFTPWrapper } from 'ssh2';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeTestHost, type TestHost } from '@pacha/test-support/host';
import { embeddedTarget, startMaster, writeAgentConfig, type MasterHandle } from '@pacha/test-support/master';
import { generateKey } from '@pacha/test-support/sshd';

// `pacha-master serve --metrics ADDR:PORT`: Prometheus text about hosts, pushes, connections and
// refusals, scraped over HTTP as Prometheus would while real agents and clients use the master.
let m: MasterHandle;
let url: string;
let work: string;
const hosts: TestHost[] = [];

beforeAll(async () => {
  work = fs.mkdtempSync(path.join(os.tmpdir(), 'pacha-master-metrics-'));
  m = await startMaster({ hosts: ['metered'], args: ['--metrics', '127.0.0.1:0'] });
  const line = await m.waitForLog(/metrics on http:\/\/127\.0\.0\.1:\d+\/metrics/);
  url = /http:\S+/.exec(line)![0];
});

afterAll(async () => {
  await m?.stop();
  for (const h of hosts) h.cleanup();
  fs.rmSync(work, { recursive: true, force: true });
});

/** An SFTP session as host "metered" with a given private key. */
function sftpSession(privateKey: Buffer): Promise<{ sftp: SFTPWrapper; end(): void }> {
  return new Promise((resolve, reject) => {
    const conn = new ssh2.Client();
    conn.on('ready', () => conn.sftp((err, sftp) => (err ? reject(err) : resolve({ sftp, end: () => conn.end() }))));
    conn.on('error', reject);
    conn.connect({ host: '127.0.0.1', port: m.port, username: 'metered', privateKey });
  });
}

async function scrape(): Promise<Map<string, number>> {
  const res = await fetch(url);
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
  const out = new Map<string, number>();
  for (const line of (await res.text()).trimEnd().split('\n')) {
    if (line.startsWith('#')) continue;
    const s = /^([a-z_]+(?:\{[^}]*\})?) (\S+)$/.exec(line);
    expect(s, line).not.toBeNull();
    out.set(s![1], Number(s![2]));
  }
  return out;
}

describe('pacha-master serve --metrics', () => {
  it('starts with the authorised host, no push, connection or refusal', async () => {
    const s = await scrape();
    expect(s.get('pacha_master_hosts')).toBe(1); // authorize makes the host's folder
    expect(s.has('pacha_master_last_push_timestamp_seconds{host="metered"}')).toBe(false);
    expect(s.get('pacha_master_connections_total')).toBe(0);
    expect(s.get('pacha_master_refusals_total{reason="auth_failed"}')).toBe(0);
    expect(s.get('pacha_master_info{version="0.1.0"}')).toBe(1);
    expect((await fetch(url.replace(/\/metrics$/, '/'))).status).toBe(404);
  });

  it("counts a host's push, its connection and the time of its last push", async () => {
    const h = makeTestHost({ name: 'metered' });
    hosts.push(h);
    writeAgentConfig(h, embeddedTarget(m));
    fs.mkdirSync(h.p('/etc/app'), { recursive: true });
    fs.writeFileSync(h.p('/etc/app/a.conf'), 'a\n');
    const before = Math.floor(Date.now() / 1000);
    for (const args of [['watch', '/etc/app'], ['snapshot'], ['push']]) {
      const r = await h.pacha(args);
      expect(r.code, r.stderr).toBe(0);
    }
    const s = await scrape();
    expect(s.get('pacha_master_hosts')).toBe(1);
    expect(s.get('pacha_master_pushes_total{host="metered"}')).toBe(1);
    expect(s.get('pacha_master_last_push_timestamp_seconds{host="metered"}')).toBeGreaterThanOrEqual(before);
    expect(s.get('pacha_master_connections_total')).toBeGreaterThanOrEqual(1);
  });

  it('counts refusals by reason: an unknown key, a write outside the allowlist', async () => {
    const stranger = generateKey(path.join(work, 'stranger'));
    await expect(sftpSession(fs.readFileSync(stranger.file))).rejects.toThrow();
    expect((await scrape()).get('pacha_master_refusals_total{reason="auth_failed"}')).toBeGreaterThanOrEqual(1);

    const own = await sftpSession(fs.readFileSync(m.keyFor('metered')));
    const opened = new Promise<void>((resolve, reject) => own.sftp.open('/pacha/hosts/metered/pacha_pre/10-evil', 'w', (err) => (err ? reject(err) : resolve())));
    await expect(opened).rejects.toThrow(/read-only/);
    own.end();
    expect((await scrape()).get('pacha_master_refusals_total{reason="sftp_denied"}')).toBeGreaterThanOrEqual(1);
  });
});
