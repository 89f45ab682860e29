import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { parseConfig } from '@pacha/shared/config';
import { PachaError, UsageError } from '@pacha/shared/errors';
import { readLock } from '@pacha/shared/lock';
import { loadOwners } from '@pacha/shared/snapshot/owners';
import { statePaths } from '@pacha/shared/state';
import { addWatched } from '@pacha/shared/watchlist';

// A file that is missing and one that cannot be read are different answers: the first may be
// normal, the second is said (the tests run as root, so "cannot read" is provoked with a
// directory, a symlink loop or a name too long rather than with permissions).

let root: string | undefined;
afterEach(() => {
  if (root) fs.rmSync(root, { recursive: true, force: true });
  root = undefined;
});
const tmpRoot = () => (root = fs.mkdtempSync(path.join(os.tmpdir(), 'pacha-unreadable-')));

describe('unreadable is not missing', () => {
  it('/etc/passwd: missing gives no names; unreadable is an error naming it', () => {
    const r = tmpRoot();
    expect(loadOwners(r).user(0)).toBe('');
    fs.mkdirSync(path.join(r, 'etc/passwd'), { recursive: true });
    expect(() => loadOwners(r)).toThrow(PachaError);
    expect(() => loadOwners(r)).toThrow(/cannot read .*\/etc\/passwd: EISDIR/);
  });

  it('the pid lock: missing is free; unreadable is an error, not a stale lock to take over', () => {
    const r = tmpRoot();
    expect(readLock(path.join(r, 'pacha.pid'))).toBeUndefined();
    fs.mkdirSync(path.join(r, 'pacha.pid'));
    expect(() => readLock(path.join(r, 'pacha.pid'))).toThrow(/cannot read the lock .*: EISDIR/);
  });

  it('pacha watch: a path that cannot be looked up is said so, not "does not exist"', () => {
    const r = tmpRoot();
    const config = parseConfig('[DEFAULT]\npacha.hostname = h\n', { file: null, root: r });
    const state = statePaths(path.join(r, 'state'));
    fs.mkdirSync(state.dir, { recursive: true });
    const long = `/${'x'.repeat(300)}`;
    expect(() => addWatched(config, state, [long])).toThrow(UsageError);
    expect(() => addWatched(config, state, [long])).toThrow(/cannot watch .*: ENAMETOOLONG/);
    expect(() => addWatched(config, state, ['/nowhere'])).toThrow(/no such file or directory/);
  });
});
