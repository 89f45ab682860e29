import { spawn } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { writeHook } from '@pacha/test-support/git-fixture';
import { PACHA_BIN, REPO_DIR } from '@pacha/test-support/cli';
import { SVC_UID, addUserHook, makeWorld, type RebuildWorld } from './rebuild-helpers.ts';

// Hooks: order, failure stops the rebuild before any file is restored, the journal lets a
// rerun skip what already succeeded, timeouts, `pacha hooks`, the callback and the examples.

let world: RebuildWorld | undefined;
const servers: http.Server[] = [];
afterEach(async () => {
  world?.cleanup();
  world = undefined;
  for (const s of servers.splice(0)) await new Promise((r) => s.close(r));
});

function hookLog(w: RebuildWorld): string[] {
  try {
    return fs.readFileSync(w.host.p('/hooklog'), 'utf8').trim().split('\n');
  } catch {
    return [];
  }
}

function logHook(name: string, extra = ''): string {
  return `#!/bin/sh\necho "${name}" >> "$PACHA_ROOT_DIR/hooklog"\n${extra}`;
}

/** A local HTTP server collecting JSON bodies. */
async function collector(): Promise<{ url: string; bodies: unknown[] }> {
  const bodies: unknown[] = [];
  const srv = http.createServer((req, res) => {
    let data = '';
    req.on('data', (d) => (data += d));
    req.on('end', () => {
      bodies.push(JSON.parse(data));
      res.end('ok');
    });
  });
  servers.push(srv);
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  return { url: `http://127.0.0.1:${(srv.address() as AddressInfo).port}/hook`, bodies };
}

async function hooksJson(w: RebuildWorld) {
  const r = await w.host.pacha(['hooks', 'web1', '--json']);
  expect(r.code, r.stderr).toBe(0);
  return JSON.parse(r.stdout) as { source: string; hooks: { phase: string; name: string; status: string }[] };
}

describe('rebuild hooks', () => {
  it('a failing pre hook stops the rebuild before any file is restored; the rerun skips what succeeded', async () => {
    world = makeWorld();
    const w = world;
    const cb = await collector();
    w.host.writeConfig({ 'pacha.host': 'file://', 'pacha.hosts.path': w.hostsPath, 'pacha.callback.url': cb.url });
    writeHook(w.master.pre, '10-a', logHook('10-a'));
    addUserHook(w.master.pre, '15-users');
    writeHook(w.master.pre, '20-b', logHook('20-b', 'echo "disk full, cannot continue" >&2\nexit 3\n'));
    writeHook(w.master.post, '10-post', logHook('post'));

    let r = await w.host.pacha(['rebuild', 'web1', '--yes']);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('pacha_pre hook 20-b failed: exited with code 3');
    expect(r.stderr).toContain('disk full, cannot continue');
    expect(r.stderr).toMatch(/staging directory is kept for inspection: .*\/tmp\/pacha-rebuild-web1-/);
    expect(hookLog(w)).toEqual(['10-a', '20-b']);
    expect(fs.existsSync(w.host.p(w.top))).toBe(false);
    expect(cb.bodies).toHaveLength(1);
    expect(cb.bodies[0]).toMatchObject({ host: 'web1', outcome: 'failed', commit: w.commits.current });
    expect((cb.bodies[0] as { error: string }).error).toContain('20-b failed');

    let listed = await hooksJson(w);
    expect(listed.source).toBe('master');
    expect(listed.hooks.map((h) => `${h.phase} ${h.name} ${h.status}`)).toEqual(['pre 10-a applied', 'pre 15-users applied', 'pre 20-b failed', 'post 10-post pending']);
    const text = await w.host.pacha(['hooks', 'web1']);
    expect(text.stdout).toMatch(/pre\s+20-b\s+failed\s+last run .* exit 3/);

    // The operator fixes the hook and runs the same command again.
    writeHook(w.master.pre, '20-b', logHook('20-b fixed'));
    r = await w.host.pacha(['rebuild', 'web1', '--yes']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toContain('hook pre 10-a: already applied with this content, skipped');
    expect(hookLog(w)).toEqual(['10-a', '20-b', '20-b fixed', 'post']);
    // The user hook did not run twice (it would have appended a second line).
    expect(fs.readFileSync(w.host.p('/etc/passwd'), 'utf8').match(/svcuser/g)).toHaveLength(1);
    expect(fs.lstatSync(w.host.p(`${w.top}/app/data/state.db`)).uid).toBe(SVC_UID);
    expect(cb.bodies[1]).toMatchObject({ host: 'web1', outcome: 'ok', commit: w.commits.current, error: null });
    expect((cb.bodies[1] as { counts: { created: number } }).counts.created).toBe(15);
    listed = await hooksJson(w);
    expect(listed.hooks.every((h) => h.status === 'applied')).toBe(true);

    // --rerun-hooks runs them all again.
    r = await w.host.pacha(['rebuild', 'web1', '--yes', '--rerun-hooks']);
    expect(r.code, r.stderr).toBe(0);
    expect(hookLog(w).slice(4)).toEqual(['10-a', '20-b fixed', 'post']);
  });

  it('a hook that runs too long is stopped and fails the rebuild', async () => {
    world = makeWorld();
    const w = world;
    writeHook(w.master.pre, '10-slow', '#!/bin/sh\necho starting\nsleep 30\n');
    const r = await w.host.pacha(['rebuild', 'web1', '--yes', '--hook-timeout', '1']);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('pacha_pre hook 10-slow failed: timed out after 1 s');
    expect(r.stderr).toContain('starting');
    expect(fs.existsSync(w.host.p(w.top))).toBe(false);
  });

  it('stopping pacha while a hook runs stops the hook too', async () => {
    world = makeWorld();
    const w = world;
    writeHook(w.master.pre, '10-wait', `#!/bin/sh\necho $$ > "$PACHA_ROOT_DIR/hook.pid"\necho ready\nsleep 30\n`);
    const child = spawn(process.execPath, [PACHA_BIN, 'rebuild', 'web1', '--yes'], { env: { ...process.env, ...w.host.env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    const running = new Promise<void>((resolve) => child.stderr.on('data', (d) => {
      stderr += d;
      if (stderr.includes('[pre 10-wait] ready')) resolve();
    }));
    const closed = new Promise<number | null>((r) => child.on('close', (code) => r(code)));
    await running; // the hook wrote its pid, then said so
    const hookPid = Number(fs.readFileSync(w.host.p('/hook.pid'), 'utf8'));
    child.kill('SIGTERM');
    expect(await closed).toBe(1);
    expect(stderr).toContain('[pre 10-wait] interrupted (SIGTERM): stopping it');
    expect(stderr).toContain('pacha_pre hook 10-wait failed: killed by SIGTERM');
    expect(() => process.kill(hookPid, 0)).toThrow();
    expect(fs.existsSync(w.host.p(w.top))).toBe(false);
  });

  it('a failing post hook fails the rebuild after the files are in place', async () => {
    world = makeWorld();
    const w = world;
    writeHook(w.master.post, '10-x', '#!/bin/sh\nkill -TERM $$\n');
    const r = await w.host.pacha(['rebuild', 'web1', '--yes']);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('pacha_post hook 10-x failed: killed by SIGTERM');
    expect(fs.existsSync(w.host.p(`${w.top}/app/bin/tool`))).toBe(true);
  });

  it('a callback that cannot be delivered is only a warning', async () => {
    world = makeWorld();
    const w = world;
    w.host.writeConfig({ 'pacha.host': 'file://', 'pacha.hosts.path': w.hostsPath, 'pacha.callback.url': 'http://127.0.0.1:9/nothing' });
    const r = await w.host.pacha(['rebuild', 'web1', '--yes']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/warning: callback .*the rebuild itself is not affected/);
  });

  it('pacha hooks falls back to the journal when the master is unreachable', async () => {
    world = makeWorld();
    const w = world;
    writeHook(w.master.pre, '10-a', logHook('10-a'));
    expect((await w.host.pacha(['rebuild', 'web1', '--yes'])).code).toBe(0);
    w.host.writeConfig({ 'pacha.host': '127.0.0.1', 'pacha.ssh.port': 9, 'pacha.hosts.path': w.hostsPath });
    const r = await w.host.pacha(['hooks', 'web1']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/warning: cannot list the hooks on the master/);
    expect(r.stdout).toMatch(/from the journal: master unreachable/);
    expect(r.stdout).toMatch(/pre\s+10-a\s+applied\s+last run .* ok/);
    const listed = await hooksJson(w);
    expect(listed.source).toBe('journal');
    expect(listed.hooks.map((h) => `${h.phase} ${h.name} ${h.status}`)).toEqual(['pre 10-a applied']);
  });
});

describe('hooks-examples', () => {
  const example = (p: string) => fs.readFileSync(path.join(REPO_DIR, 'hooks-examples', p), 'utf8');

  it('10-apt-repository adds a source and its key under the root dir before the packages step, once', async () => {
    world = makeWorld();
    const w = world;
    writeHook(w.master.pre, '10-apt-repository', example('pacha_pre/10-apt-repository'));
    const key = path.join(w.host.root, 'signing.asc');
    fs.writeFileSync(key, '-----BEGIN PGP PUBLIC KEY BLOCK-----\ntest\n-----END PGP PUBLIC KEY BLOCK-----\n');
    const env = { PACHA_REPO_NAME: 'example', PACHA_REPO_URI: 'https://apt.example.org/debian', PACHA_REPO_SUITES: 'bookworm', PACHA_REPO_COMPONENTS: 'main', PACHA_REPO_KEY_FILE: key };
    let r = await w.host.pacha(['rebuild', 'web1', '--yes'], { env });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toContain('[pre 10-apt-repository] added source example (https://apt.example.org/debian bookworm main)');
    expect(fs.readFileSync(w.host.p('/etc/apt/sources.list.d/example.sources'), 'utf8')).toBe(
      'Types: deb\nURIs: https://apt.example.org/debian\nSuites: bookworm\nComponents: main\nSigned-By: /etc/apt/keyrings/example.asc\n',
    );
    expect(fs.readFileSync(w.host.p('/etc/apt/keyrings/example.asc'), 'utf8')).toContain('test');
    r = await w.host.pacha(['rebuild', 'web1', '--yes', '--rerun-hooks'], { env });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toContain('[pre 10-apt-repository] source example exists');
  });

  it('20-install-packages prints the package manager commands in dry-run mode', async () => {
    world = makeWorld();
    const w = world;
    writeHook(w.master.pre, '20-install-packages', example('pacha_pre/20-install-packages'));
    const r = await w.host.pacha(['rebuild', 'web1', '--yes'], { env: { PACHA_PACKAGES: 'nginx rsync', PACHA_PACKAGES_DRY_RUN: '1' } });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/\[pre 20-install-packages\] would run: (apt-get install -y -q --no-install-recommends|dnf install -y --installroot=\S+|yum install -y --installroot=\S+) nginx rsync/);
  });

  it('90-notify POSTs the host and commit as JSON', async () => {
    world = makeWorld();
    const w = world;
    const cb = await collector();
    writeHook(w.master.post, '90-notify', example('pacha_post/90-notify'));
    const r = await w.host.pacha(['rebuild', 'web1', '--yes'], { env: { PACHA_NOTIFY_URL: cb.url } });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toContain(`[post 90-notify] notified ${cb.url}`);
    expect(cb.bodies).toEqual([expect.objectContaining({ event: 'rebuilt', host: 'web1', commit: w.commits.current })]);
  });
});
