import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { commitSnapshot, packRepo, type FixtureFile } from '@pacha/test-support/git-fixture';
import { PACHA_BIN } from '@pacha/test-support/cli';
import { makeWorld, type RebuildWorld } from './rebuild-helpers.ts';

// When the restore waits for the disk (restore.ts, FinalSync): a file that replaces one is
// fsynced before its rename (the path holds the old or the new version whenever the machine
// stops); new files are not waited for one by one, and the restore ends with a syncfs after
// its last rename (one started before the directories' metadata does not count: the last one
// does). Seen from outside with strace on the real CLI.

let world: RebuildWorld | undefined;
afterEach(() => {
  world?.cleanup();
  world = undefined;
});

describe('pacha rebuild: durability', () => {
  it('fsyncs a replacing file before its rename, and new files with one syncfs after the last rename', async () => {
    const w = makeWorld();
    world = w;
    const dir = `${w.top}/srv`;
    const entries: FixtureFile[] = [
      { path: dir, type: 'dir', mode: 0o755 },
      { path: `${dir}/old.conf`, type: 'file', content: 'from the snapshot\n', mode: 0o644 },
      ...Array.from({ length: 40 }, (_, i): FixtureFile => ({ path: `${dir}/new-${i}.conf`, type: 'file', content: `new ${i}\n`, mode: 0o644 })),
    ];
    commitSnapshot(w.master.repo, { roots: [dir], entries, time: 1_700_200_000 });
    packRepo(w.master.repo);
    fs.mkdirSync(w.host.p(dir), { recursive: true });
    fs.writeFileSync(w.host.p(`${dir}/old.conf`), 'on the host before the rebuild\n');

    const log = path.join(path.dirname(w.hostsPath), 'strace.log');
    const args = ['-f', '-qq', '-y', '-e', 'trace=fsync,fdatasync,syncfs,rename,renameat,renameat2,fchmod', '-o', log, process.execPath, PACHA_BIN, 'rebuild', 'web1', '--yes'];
    const code = await new Promise((resolve) => spawn('strace', args, { env: { ...process.env, ...w.host.env }, stdio: 'ignore' }).once('exit', resolve));
    expect(code).toBe(0);
    expect(fs.readFileSync(w.host.p(`${dir}/old.conf`), 'utf8')).toBe('from the snapshot\n');
    expect(fs.readFileSync(w.host.p(`${dir}/new-39.conf`), 'utf8')).toBe('new 39\n');

    const lines = fs.readFileSync(log, 'utf8').split('\n');
    const at = (re: RegExp) => lines.flatMap((l, i) => (re.test(l) ? [i] : []));
    // The restore's temporary files are .<name>.pacha-<pid>-<n> in the file's own directory.
    const tempSyncs = at(/f(data)?sync\(\d+<[^>]*\/srv\/\.[^/>]*\.pacha-\d+-\d+>\)/);
    expect(tempSyncs.map((i) => lines[i].match(/\/srv\/\.([^/>]*)\.pacha-/)![1])).toEqual(['old.conf']);
    const renames = at(/rename[a-z0-9]*\(.*"(\/proc\/self\/fd\/\d+\/)?(old|new-\d+)\.conf"/);
    const renameOfOld = at(/rename[a-z0-9]*\(.*"(\/proc\/self\/fd\/\d+\/)?old\.conf"/);
    expect(renames).toHaveLength(41);
    expect(renameOfOld).toHaveLength(1);
    expect(tempSyncs[0]).toBeLessThan(renameOfOld[0]);
    const syncfs = at(/syncfs\(\d+<[^>]*\/srv> *\) = 0/);
    expect(syncfs.length).toBeGreaterThan(0);
    expect(syncfs.at(-1)).toBeGreaterThan(Math.max(...renames));
    // ... and after the directories' metadata, the restore's last pass.
    const dirModes = at(/fchmod\(\d+<[^>]*\/srv>, 0?755\) = 0/);
    expect(dirModes).toHaveLength(1);
    expect(syncfs.at(-1)).toBeGreaterThan(dirModes[0]);
  });
});
