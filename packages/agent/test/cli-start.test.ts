import fs from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { PACHA_VERSION } from '@pacha/shared/version';
import { FORMAT_VERSION } from '@pacha/shared/format/snapshot';
import { MASTER_BIN, PACHA_BIN, REPO_DIR, runNode, runProgram } from '@pacha/test-support/cli';

// What every pacha process pays before its command runs: the launchers hand yargs a stand-in
// for string-width (packages/shared/bin/on-use.js), and each program loads only the module of
// the command it runs.
const fromSharedBin = createRequire(path.join(REPO_DIR, 'packages/shared/bin/on-use.js'));
const standIn = fromSharedBin('./string-width-on-use.cjs') as (s: string) => number;
const stringWidth = (fromSharedBin('string-width') as { default: (s: string) => number }).default;
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'pacha-cli-start-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

/** The modules (file URLs under the repository) a run of `bin args` loaded. */
async function modulesLoaded(bin: string, args: string[]): Promise<string[]> {
  const list = path.join(tmp, `loaded-${path.basename(bin)}-${args[0]}.json`);
  const recorder = path.join(tmp, 'record.mjs');
  fs.writeFileSync(
    recorder,
    [
      "import fs from 'node:fs';",
      "import module from 'node:module';",
      'const seen = [];',
      'module.registerHooks({ load(url, context, next) { seen.push(url); return next(url, context); } });',
      `process.on('exit', () => fs.writeFileSync(${JSON.stringify(list)}, JSON.stringify(seen)));`,
    ].join('\n'),
  );
  const r = await runProgram(process.execPath, ['--import', recorder, bin, ...args], { env: { PACHA_ROOT_DIR: tmp, PACHA_CONFIG: '' } });
  expect(r.code, r.stderr).toBe(0);
  return (JSON.parse(fs.readFileSync(list, 'utf8')) as string[]).map((u) => u.replace(`file://${REPO_DIR}/`, ''));
}

describe('start-up of the programs', () => {
  it('the string-width stand-in measures every text as string-width does', () => {
    const texts = ['', 'pacha snapshot', '  -m, --message  note added [string]', 'tab\there', '\u001b[31mred\u001b[39m', 'héllo', '日本語', 'e\u0301', '👍🏽 ok', 'a\u200bb'];
    for (const t of texts) expect(standIn(t), JSON.stringify(t)).toBe(stringWidth(t));
  });

  it('`pacha version` loads no string-width and no other command', async () => {
    const loaded = await modulesLoaded(PACHA_BIN, ['version']);
    expect(loaded).toContain('packages/agent/src/commands/version.ts');
    expect(loaded.filter((u) => /\/string-width\/|commands\/(?!version)/.test(u))).toEqual([]);
  });

  it('`pacha version` names the snapshot format this pacha writes', async () => {
    const r = await runNode(PACHA_BIN, ['version', '--json']);
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ version: PACHA_VERSION, snapshotFormat: FORMAT_VERSION });
  });

  it('`pacha status` names the master without loading ssh2', async () => {
    const loaded = await modulesLoaded(PACHA_BIN, ['status']);
    expect(loaded).toContain('packages/agent/src/commands/status.ts');
    expect(loaded.filter((u) => /\/ssh2\/|\/string-width\//.test(u))).toEqual([]);
  });

  it('`pacha-master hosts` loads neither ssh2 nor the other commands', async () => {
    const loaded = await modulesLoaded(MASTER_BIN, ['hosts', '--hosts-path', tmp]);
    expect(loaded).toContain('packages/master/src/commands/hosts.ts');
    expect(loaded.filter((u) => /\/string-width\/|\/ssh2\/|commands\/(?!hosts)/.test(u))).toEqual([]);
  });

  it('help is laid out exactly as with string-width itself', async () => {
    // main.ts run directly has no launcher, so yargs measures with the real string-width.
    for (const [bin, main] of [
      [PACHA_BIN, 'packages/agent/src/main.ts'],
      [MASTER_BIN, 'packages/master/src/main.ts'],
    ]) {
      for (const args of [['--help'], ['log', '--help']]) {
        const viaLauncher = await runNode(bin, args);
        const direct = await runNode(path.join(REPO_DIR, main), args);
        expect(viaLauncher.code).toBe(0);
        expect(viaLauncher.stdout).toMatch(/Options:/);
        expect(viaLauncher.stdout).toBe(direct.stdout);
      }
    }
  });
});
