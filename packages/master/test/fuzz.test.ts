import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fuzzMaster, fuzzReader } from '@pacha/test-support/fuzz';
import { makeTestHost } from '@pacha/test-support/host';
import { embeddedTarget, startMaster, writeAgentConfig, type MasterHandle } from '@pacha/test-support/master';

// A short, bounded smoke run of the fuzzers (scripts/fuzz-master.ts runs them for longer):
// mutated packs and indexes at the reader, random SFTP packets and mutated uploads at the master.

let m: MasterHandle;
let base: string;
beforeAll(async () => {
  base = fs.mkdtempSync(path.join(os.tmpdir(), 'pacha-fuzz-test-'));
  m = await startMaster({ hosts: ['fuzzhost'], tmpDir: base });
  const h = makeTestHost({ name: 'fuzzhost', tmpDir: base });
  writeAgentConfig(h, embeddedTarget(m));
  fs.mkdirSync(h.p('/srv/app'), { recursive: true });
  fs.writeFileSync(h.p('/srv/app/a'), 'a\n');
  for (const args of [['watch', '/srv/app'], ['snapshot'], ['push']]) expect((await h.pacha(args)).code).toBe(0);
}, 60_000);
afterAll(async () => {
  await m?.stop();
  fs.rmSync(base, { recursive: true, force: true });
});

describe('fuzz (smoke run)', () => {
  it('the reader reads the truth or fails with a typed error, whatever the packs beside it', async () => {
    expect((await fuzzReader({ runs: 150, seed: 11 })).inputs).toBe(150);
  });

  it('the master stays up, writes nothing off its allowlist, and its repository stays valid', async () => {
    expect((await fuzzMaster(m, 'fuzzhost', { runs: 8, seed: 11 })).inputs).toBe(8);
  }, 60_000);
});
