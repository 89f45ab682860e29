import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ExistsError, NotFoundError } from '@pacha/shared/errors';
import type { Transport } from '@pacha/shared/transport/transport';

// One behaviour for every transport: the local folder, the embedded master and OpenSSH must
// pass the same tests, because push and rebuild are written against the interface only.

export interface SuiteTarget {
  transport: Transport;
  /** A writable remote folder for the tests (created by the suite with mkdirp). */
  base: string;
  /**
   * The embedded master writes only what the push protocol writes (an allowlist): file names in
   * `base` get this prefix (a temporary name it accepts), and the tests that need folders or
   * renames of their own are left to the master's own tests.
   */
  allowlist?: { filePrefix: string };
  cleanup(): Promise<void>;
}

/** `setup` returns null to skip (e.g. sshd missing outside CI; the harness has said so loudly). */
export function transportSuite(name: string, setup: () => Promise<SuiteTarget | null>): void {
  describe(`transport: ${name}`, () => {
    let t: SuiteTarget | null = null;
    let tmp: string;
    beforeAll(async () => {
      t = await setup();
      tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'pacha-transport-local-'));
    });
    afterAll(async () => {
      await t?.cleanup();
      fs.rmSync(tmp, { recursive: true, force: true });
    });
    const tr = () => t!.transport;
    const at = (p: string) => `${t!.base}/${t!.allowlist?.filePrefix ?? ''}${p}`;
    const run = (title: string, fn: () => Promise<void>) =>
      it(title, async (ctx) => {
        if (t === null) ctx.skip();
        await fn();
      });
    /** Needs folders or renames of the test's own choosing: not on an allowlist master. */
    const runFree = (title: string, fn: () => Promise<void>) =>
      it(title, async (ctx) => {
        if (t === null || t.allowlist) ctx.skip();
        await fn();
      });

    runFree('mkdirp creates nested folders and is idempotent', async () => {
      await tr().mkdirp(at('a/b/c'));
      await tr().mkdirp(at('a/b/c'));
      expect((await tr().stat(at('a/b/c')))?.type).toBe('dir');
      expect((await tr().stat(at('a/b')))?.type).toBe('dir');
    });

    run('stat of a missing file is null; reading one fails with a NotFoundError (ENOENT)', async () => {
      expect(await tr().stat(at('nope'))).toBeNull();
      expect(await tr().stat(at('nope/deeper'))).toBeNull();
      await expect(tr().readFile(at('nope'))).rejects.toBeInstanceOf(NotFoundError);
      await expect(tr().readFile(at('nope'))).rejects.toMatchObject({ code: 'ENOENT' });
      await expect(tr().download(at('nope'), path.join(tmp, 'nope'))).rejects.toBeInstanceOf(NotFoundError);
      await expect(tr().list(at('nope'))).rejects.toBeInstanceOf(NotFoundError);
    });

    runFree('a file where a folder should be is an ExistsError, not "no such file"', async () => {
      await tr().mkdirp(t!.base);
      await tr().writeFile(at('plain'), 'x');
      await expect(tr().mkdirp(at('plain'))).rejects.toBeInstanceOf(ExistsError);
    });

    run('writeFile / readFile round trip, overwrite truncates', async () => {
      await tr().mkdirp(t!.base);
      await tr().writeFile(at('w.txt'), 'a longer first content\n');
      await tr().writeFile(at('w.txt'), 'short\n');
      expect((await tr().readFile(at('w.txt'))).toString()).toBe('short\n');
      const st = await tr().stat(at('w.txt'));
      expect(st).toMatchObject({ type: 'file', size: 6 });
      const bin = crypto.randomBytes(70_000);
      await tr().writeFile(at('bin'), bin);
      expect((await tr().readFile(at('bin'))).equals(bin)).toBe(true);
    });

    runFree('list names files and folders with their types', async () => {
      await tr().mkdirp(at('l/sub'));
      await tr().writeFile(at('l/f1'), '1');
      const entries = await tr().list(at('l'));
      const byName = Object.fromEntries(entries.map((e) => [e.name, e.type]));
      expect(byName).toEqual({ sub: 'dir', f1: 'file' });
    });

    run('createExclusive creates once, then returns false and leaves the file alone', async () => {
      await tr().mkdirp(t!.base);
      expect(await tr().createExclusive(at('lock'), 'first')).toBe(true);
      expect(await tr().createExclusive(at('lock'), 'second')).toBe(false);
      expect((await tr().readFile(at('lock'))).toString()).toBe('first');
      await tr().remove(at('lock'));
      expect(await tr().createExclusive(at('lock'), '')).toBe(true);
      expect((await tr().stat(at('lock')))?.size).toBe(0);
    });

    runFree('rename moves, and replaces an existing target', async () => {
      await tr().mkdirp(t!.base);
      await tr().writeFile(at('r.tmp'), 'new');
      await tr().rename(at('r.tmp'), at('r'));
      expect(await tr().stat(at('r.tmp'))).toBeNull();
      await tr().writeFile(at('r.tmp2'), 'newer');
      await tr().rename(at('r.tmp2'), at('r'));
      expect((await tr().readFile(at('r'))).toString()).toBe('newer');
      expect(await tr().stat(at('r.tmp2'))).toBeNull();
    });

    run('upload then download a multi-MiB file: complete when the promise resolves', async () => {
      await tr().mkdirp(t!.base);
      const data = crypto.randomBytes(6 * 1024 * 1024 + 12345);
      const src = path.join(tmp, 'big.src');
      const dst = path.join(tmp, 'big.dst');
      fs.writeFileSync(src, data);
      await tr().upload(src, at('big'));
      expect((await tr().stat(at('big')))?.size).toBe(data.length);
      // Each arrival told is a prefix of the file already written, growing up to its size.
      const told: number[] = [];
      let prefixesRight = true;
      await tr().download(at('big'), dst, (n) => {
        told.push(n);
        const fd = fs.openSync(dst, 'r');
        const head = Buffer.alloc(n);
        fs.readSync(fd, head, 0, n, 0);
        fs.closeSync(fd);
        if (!head.equals(data.subarray(0, n))) prefixesRight = false;
      });
      expect(prefixesRight).toBe(true);
      expect(told.at(-1)).toBe(data.length);
      expect(told.every((n, i) => i === 0 || n > told[i - 1])).toBe(true);
      // Read synchronously right away: nothing may still be in flight.
      const got = fs.readFileSync(dst);
      expect(got.length).toBe(data.length);
      expect(crypto.createHash('sha256').update(got).digest('hex')).toBe(crypto.createHash('sha256').update(data).digest('hex'));
    });

    run('remove deletes, and is quiet when the file is already gone', async () => {
      await tr().mkdirp(t!.base);
      await tr().writeFile(at('gone'), 'x');
      await tr().remove(at('gone'));
      expect(await tr().stat(at('gone'))).toBeNull();
      await tr().remove(at('gone'));
    });
  });
}
