import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { diffLive, takeSnapshot } from '../src/snapshot/engine.ts';
import { readSnapshot } from '../src/snapshot/read.ts';
import { readHead } from '../src/git/repository.ts';
import type { MetadataEntry } from '../src/format/entry.ts';
import { snapHost, type SnapHost } from './snapshot-helpers.ts';

// Extended attributes in snapshots, on real files (as root: trusted.* and security.capability).

let hosts: SnapHost[] = [];
afterEach(() => {
  for (const h of hosts) h.cleanup();
  hosts = [];
});
function host(): SnapHost {
  const h = snapHost({ 'pacha.watch': '/srv/app' });
  hosts.push(h);
  fs.mkdirSync(h.p('/srv/app'), { recursive: true });
  return h;
}
const sh = (cmd: string, ...args: string[]) => execFileSync(cmd, args, { encoding: 'utf8' });
async function meta(h: SnapHost): Promise<Map<string, MetadataEntry>> {
  const snap = await readSnapshot(h.repo(), (await readHead(h.repo()))!);
  return new Map(snap.entries.map((e) => [e.path, e]));
}

describe('extended attributes in snapshots', () => {
  it('records ACLs by name and id, capabilities, user.* and a symlink trusted.*, diffable text', async () => {
    const h = host();
    fs.writeFileSync(h.p('/srv/app/tool'), '#!/bin/sh\n', { mode: 0o755 });
    fs.writeFileSync(h.p('/srv/app/shared.txt'), 'x');
    fs.symlinkSync('tool', h.p('/srv/app/link'));
    fs.writeFileSync(h.p('/srv/app/plain'), 'p');
    sh('setcap', 'cap_net_bind_service+ep', h.p('/srv/app/tool'));
    sh('setfacl', '-m', 'u:1000:rw,g:65534:r', h.p('/srv/app/shared.txt'));
    sh('setfacl', '-d', '-m', 'g:1000:rwx', h.p('/srv/app'));
    sh('setfattr', '-n', 'user.note', '-v', 'keep me', h.p('/srv/app/plain'));
    sh('setfattr', '-h', '-n', 'trusted.link', '-v', 'L', h.p('/srv/app/link'));
    const r = await takeSnapshot(h.env2());
    expect(r.warnings).toEqual([]);
    const m = await meta(h);
    expect(m.get('srv/app/tool')!.xattrs).toBe('security.capability=cap:v2;e;p=cap_net_bind_service;i=');
    expect(m.get('srv/app/shared.txt')!.xattrs).toBe('system.posix_acl_access=acl:u::rw-,u:alice:1000:rw-,g::r--,g:nogroup:65534:r--,m::rw-,o::r--');
    expect(m.get('srv/app')!.xattrs).toBe('system.posix_acl_default=acl:u::rwx,g::r-x,g:staff:1000:rwx,m::rwx,o::r-x');
    expect(m.get('srv/app/plain')!.xattrs).toBe('user.note="keep me"');
    expect(m.get('srv/app/link')!.xattrs).toBe('trusted.link="L"');
    // the directory's metadata file holds them, one line per path
    expect(h.git(['show', 'HEAD:srv/app/.pacha'])).toMatch(/^plain\tfile\t0644\troot:0\troot:0\t\d+\.\d{9}\t1\t\tuser\.note="keep me"$/m);
    execFileSync('git', ['--git-dir', h.repo(), 'fsck', '--full', '--strict', '--no-dangling'], { stdio: 'pipe' });
    expect((await takeSnapshot(h.env2())).commit).toBeNull(); // nothing changed
  });

  it('an attribute-only change is a snapshot of its own, by the full scan and by the dirty route, and shows in diff', async () => {
    const h = host();
    fs.writeFileSync(h.p('/srv/app/a'), 'a');
    fs.writeFileSync(h.p('/srv/app/b'), 'b');
    await takeSnapshot(h.env2());

    sh('setfattr', '-n', 'user.tag', '-v', 'v1', h.p('/srv/app/a'));
    const d = await diffLive(h.env2());
    expect(d.changes.map((c) => [c.path, c.kind, c.details])).toEqual([['srv/app/a', 'metadata', ['xattrs']]]);
    const full = await takeSnapshot(h.env2());
    expect(full.summary).toMatchObject({ added: 0, changed: 0, deleted: 0, metadataOnly: 1 });
    expect(h.git(['log', '-p', '-1', '--', 'srv/app/.pacha'])).toMatch(/^\+a\tfile\t.*\tuser\.tag="v1"$/m);

    sh('setfacl', '-m', 'u:1000:r', h.p('/srv/app/b'));
    const dirty = await takeSnapshot(h.env2(), { dirty: ['/srv/app/b'] });
    expect(dirty.summary).toMatchObject({ metadataOnly: 1 });
    expect((await meta(h)).get('srv/app/b')!.xattrs).toMatch(/^system\.posix_acl_access=acl:.*u:alice:1000:r--/);

    sh('setfattr', '-x', 'user.tag', h.p('/srv/app/a'));
    const removed = await takeSnapshot(h.env2());
    expect(removed.summary).toMatchObject({ metadataOnly: 1 });
    expect((await meta(h)).get('srv/app/a')!.xattrs).toBeUndefined();
  });
});
