// Fuzz the object reader and the embedded master for a bounded time (not part of npm test; a
// short smoke run is, in packages/master/test/fuzz.test.ts):
//   node scripts/fuzz-master.ts [--seconds 60] [--seed N] [--json]
// Prints how many inputs each part tried. Exit 1 on the first property that fails (fast-check
// prints the shrunk input and the seed to replay it).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fuzzMaster, fuzzReader } from '@pacha/test-support/fuzz';
import { embeddedTarget, startMaster, writeAgentConfig } from '@pacha/test-support/master';
import { makeTestHost } from '@pacha/test-support/host';

const arg = (name: string) => {
  const i = process.argv.indexOf(name);
  return i < 0 ? undefined : process.argv[i + 1];
};
const seconds = Number(arg('--seconds') ?? 60);
const seed = arg('--seed') === undefined ? undefined : Number(arg('--seed'));
if (!Number.isFinite(seconds) || seconds <= 0) {
  process.stderr.write(`--seconds ${arg('--seconds')}: accepted: a number of seconds, more than 0\n`);
  process.exit(2);
}

const half = (seconds * 1000) / 2;
const reader = await fuzzReader({ runs: 1e9, until: Date.now() + half, seed });

const base = fs.mkdtempSync(path.join(os.tmpdir(), 'pacha-fuzz-'));
const m = await startMaster({ hosts: ['fuzzhost'], tmpDir: base });
let master;
try {
  const h = makeTestHost({ name: 'fuzzhost', tmpDir: base });
  writeAgentConfig(h, embeddedTarget(m));
  fs.mkdirSync(h.p('/srv/app'), { recursive: true });
  fs.writeFileSync(h.p('/srv/app/a'), 'a\n');
  for (const args of [['watch', '/srv/app'], ['snapshot'], ['push']]) {
    const r = await h.pacha(args);
    if (r.code !== 0) throw new Error(`pacha ${args.join(' ')}: ${r.stderr}`);
  }
  master = await fuzzMaster(m, 'fuzzhost', { runs: 1e9, until: Date.now() + half, seed });
} finally {
  await m.stop();
  fs.rmSync(base, { recursive: true, force: true });
}
const result = { seconds, reader, master };
if (process.argv.includes('--json')) process.stdout.write(JSON.stringify(result) + '\n');
else {
  process.stdout.write(`reader: ${reader.inputs} mutated pack/idx pairs tried (${reader.accepted} still verified)\n`);
  process.stdout.write(`master: ${master.inputs} inputs tried (SFTP packet sequences and mutated pack/idx uploads; ${master.accepted} renames accepted); master up, nothing written off the allowlist, git fsck --strict clean, main forward\n`);
}
