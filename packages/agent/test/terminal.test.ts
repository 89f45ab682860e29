import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { escapeTerminal } from '@pacha/shared/terminal';
import { commitSnapshot, packRepo, writeHook } from '@pacha/test-support/git-fixture';
import { makeTestHost, type TestHost } from '@pacha/test-support/host';
import { runMaster, type RunResult } from '@pacha/test-support/cli';
import { makeWorld, type RebuildWorld } from './rebuild-helpers.ts';

// Written as the owner of a hostile repository or master folder: names, commit messages, link
// targets, hook names and hook output full of terminal controls (erase the line, return to its
// start, CSI, right-to-left override) must reach the operator's terminal as visible escapes,
// while --json keeps the exact text.

const ERASE = '\x1b[2K\r';
const EVIL_NAME = `ok.conf${ERASE}create   shadow`;
const EVIL_MESSAGE = `snapshot${ERASE}\x9b31mall good\u202e`;

/** No byte that acts on a terminal, except the line breaks between lines. */
function expectInert(text: string): void {
  expect(text).not.toMatch(/[\x00-\x09\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]/);
}

let world: RebuildWorld | undefined;
let other: TestHost | undefined;
afterEach(() => {
  world?.cleanup();
  other?.cleanup();
  world = other = undefined;
});

describe('escapeTerminal', () => {
  it('writes every control as a visible escape, and can be read back unambiguously', () => {
    expect(escapeTerminal('a\x1b[2K\rb\n\t\x00\x7f\x9b\u202ec\\d')).toBe('a\\x1b[2K\\rb\\n\\t\\x00\\x7f\\x9b\\u202ec\\\\d');
    expect(escapeTerminal('naïve ✓ 名前')).toBe('naïve ✓ 名前');
    // A message pacha composed keeps its own line breaks; other controls are still escaped.
    expect(escapeTerminal('line 1\nline 2\x1b[A\\', { composed: true })).toBe('line 1\nline 2\\x1b[A\\');
  });
});

describe('names and messages from a repository are escaped on the terminal', () => {
  function hostileWorld(): RebuildWorld {
    const w = makeWorld();
    commitSnapshot(w.master.repo, {
      roots: [`${w.top}/app`],
      entries: [
        { path: `${w.top}/app`, type: 'dir' },
        { path: `${w.top}/app/${EVIL_NAME}`, type: 'file', content: 'x\n' },
        { path: `${w.top}/app/link`, type: 'symlink', target: `target${ERASE}` },
      ],
      message: EVIL_MESSAGE,
      time: 1_700_200_000,
    });
    packRepo(w.master.repo);
    writeHook(w.master.pre, `10-hook${ERASE}fake`, `#!/bin/sh\nprintf 'hook says\\033[2K\\rnothing\\n'\n`);
    return w;
  }

  it('rebuild --dry-run and the plan, the hooks and their output; --json keeps the exact names', async () => {
    world = hostileWorld();
    const w = world;
    const dry = await w.host.pacha(['rebuild', 'web1', '--dry-run']);
    expect(dry.code, dry.stderr).toBe(0);
    expectInert(dry.stdout + dry.stderr);
    expect(dry.stdout).toContain(`create   ${w.top}/app/ok.conf\\x1b[2K\\rcreate   shadow (file 2 bytes`);
    expect(dry.stdout).toContain('symlink -> target\\x1b[2K\\r');
    expect(dry.stdout).toContain('would run pacha_pre hook 10-hook\\x1b[2K\\rfake');

    const json = await w.host.pacha(['rebuild', 'web1', '--dry-run', '--json']);
    expect(JSON.parse(json.stdout).differences).toContain(`create   ${w.top}/app/${EVIL_NAME} (file 2 bytes, 0644 root(0):root(0))`);

    const r = await w.host.pacha(['rebuild', 'web1', '--yes']);
    expect(r.code, r.stderr).toBe(0);
    expectInert(r.stdout + r.stderr);
    expect(r.stderr).toContain('[pre 10-hook\\x1b[2K\\rfake] hook says\\x1b[2K\\rnothing');
    expect(fs.readFileSync(w.host.p(`${w.top}/app/${EVIL_NAME}`), 'utf8')).toBe('x\n');

    const hooks = await w.host.pacha(['hooks', 'web1']);
    expectInert(hooks.stdout + hooks.stderr);
    expect(hooks.stdout).toContain('10-hook\\x1b[2K\\rfake');
    const hooksJson = await w.host.pacha(['hooks', 'web1', '--json']);
    expect(JSON.parse(hooksJson.stdout).hooks[0].name).toBe(`10-hook${ERASE}fake`);
  });

  it('a failing hook: its name and output in the error are escaped', async () => {
    world = makeWorld();
    const w = world;
    writeHook(w.master.pre, '10-bad', `#!/bin/sh\nprintf 'E: broken\\033]0;title\\007\\rrewritten\\n'\nexit 3\n`);
    const r = await w.host.pacha(['rebuild', 'web1', '--yes']);
    expect(r.code).toBe(1);
    expectInert(r.stdout + r.stderr);
    expect(r.stderr).toContain('E: broken\\x1b]0;title\\x07\\rrewritten');
  });

  it('pacha log and pacha-master log escape commit messages; --json keeps them', async () => {
    world = hostileWorld();
    const w = world;
    // This machine is another host: web1's history is read from the master.
    w.host.writeConfig({ 'pacha.hostname': 'other', 'pacha.host': 'file://', 'pacha.hosts.path': w.hostsPath });
    const log = await w.host.pacha(['log', 'web1']);
    expect(log.code, log.stderr).toBe(0);
    expectInert(log.stdout + log.stderr);
    const shown = /snapshot\\x1b\[2K\\r\\x9b31mall good\\u202e/;
    expect(log.stdout).toMatch(shown);
    const json = await w.host.pacha(['log', 'web1', '--json']);
    expect(JSON.parse(json.stdout)[0].message).toBe(EVIL_MESSAGE);

    const m: RunResult = await runMaster(['log', 'web1', '--hosts-path', w.hostsPath]);
    expect(m.code, m.stderr).toBe(0);
    expectInert(m.stdout + m.stderr);
    expect(m.stdout).toMatch(shown);
  });

  it('pacha diff escapes live names; --json keeps them', async () => {
    other = makeTestHost();
    const h = other;
    fs.mkdirSync(h.p('/srv/app'), { recursive: true });
    expect((await h.pacha(['watch', '/srv/app'])).code).toBe(0);
    expect((await h.pacha(['snapshot'])).code).toBe(0);
    fs.writeFileSync(path.join(h.p('/srv/app'), EVIL_NAME), 'x');
    const d = await h.pacha(['diff']);
    expect(d.code, d.stderr).toBe(0);
    expectInert(d.stdout + d.stderr);
    expect(d.stdout).toContain('added    /srv/app/ok.conf\\x1b[2K\\rcreate   shadow');
    const j = await h.pacha(['diff', '--json']);
    expect(JSON.parse(j.stdout).changes.map((c: { path: string }) => c.path)).toContain(`/srv/app/${EVIL_NAME}`);
  });
});
