import fs from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { startMaster, embeddedTarget, opensshTarget, writeAgentConfig, type SftpTarget } from '@pacha/test-support/master';
import { startSshd } from '@pacha/test-support/sshd';
import { makeAgentHost, fsckOk, refOf, commitCount, type AgentHost } from './push-helpers.ts';

// Fleet load: 50 agents (separate processes, each with its own key) push at the same moment to
// one master. Every snapshot lands, every repository passes git fsck, no connection is refused
// (both masters are configured for more than 50), and the embedded master's peak memory is reported.

const FLEET = 50;
const cleanups: (() => unknown)[] = [];
afterAll(async () => {
  for (const c of cleanups.reverse()) await c();
});

function vmHwmKiB(pid: number): number {
  const m = /VmHWM:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) : NaN;
}

async function fleetPush(t: SftpTarget, prefix: string): Promise<void> {
  const agents: AgentHost[] = [];
  const heads = new Map<string, string>();
  for (let i = 0; i < FLEET; i++) {
    const h = makeAgentHost(`${prefix}${String(i).padStart(2, '0')}`);
    cleanups.push(() => h.cleanup());
    writeAgentConfig(h, t);
    h.snapshot(8, 0);
    heads.set(h.name, h.snapshot(8, 1)); // two snapshots each
    agents.push(h);
  }
  const started = Date.now();
  const results = await Promise.all(agents.map((h) => h.pacha(['push', '--json'], { timeoutMs: 120_000 })));
  const seconds = (Date.now() - started) / 1000;
  console.log(`fleet: ${FLEET} agents pushed to the ${t.kind} master in ${seconds.toFixed(1)} s`);
  for (const [i, r] of results.entries()) {
    const h = agents[i];
    expect(r.code, `${h.name}: ${r.stderr}`).toBe(0);
    // Nothing was refused or dropped: no push needed a retry.
    expect(r.stderr, h.name).not.toMatch(/retry|refused|reset/i);
    expect(JSON.parse(r.stdout)).toMatchObject({ commits: 2, remoteHead: heads.get(h.name) });
    const repo = path.join(t.hostDir(h.name), 'repo');
    expect(refOf(repo)).toBe(heads.get(h.name));
    expect(commitCount(repo)).toBe(2);
    fsckOk(repo);
  }
}

describe(`a fleet of ${FLEET} agents pushing at once`, () => {
  it('to one embedded master: all land, all pass fsck, memory stays bounded', async () => {
    const m = await startMaster();
    cleanups.push(() => m.stop());
    const before = vmHwmKiB(m.pid());
    await fleetPush(embeddedTarget(m), 'fe');
    const peak = vmHwmKiB(m.pid());
    console.log(`embedded master peak memory (VmHWM): ${(peak / 1024).toFixed(1)} MiB (at start ${(before / 1024).toFixed(1)} MiB)`);
    expect(peak).toBeLessThan(400 * 1024);
    expect(m.output()).not.toMatch(/too many connections|refus/i);
  }, 240_000);

  it('to one OpenSSH sshd (MaxStartups raised): all land, all pass fsck', async (ctx) => {
    const s = await startSshd({ what: 'the OpenSSH fleet test' });
    if (!s) ctx.skip();
    cleanups.push(() => s!.stop());
    await fleetPush(opensshTarget(s!), 'fo');
  }, 240_000);
});
