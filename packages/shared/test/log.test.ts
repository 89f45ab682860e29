import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { afterAll, describe, expect, it } from 'vitest';
import { PACHA_BIN } from '@pacha/test-support/cli';
import { createLogger } from '@pacha/shared/log';

// Under systemd each line carries its syslog priority and no timestamp of its own. The CLI is
// run with its stderr on a real file whose device:inode goes into JOURNAL_STREAM, as systemd does.
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'pacha-log-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

function runWithStderrFile(args: string[], journalStream: (file: string) => string): string {
  const file = path.join(tmp, `stderr-${Math.random().toString(36).slice(2)}`);
  fs.mkdirSync(path.join(tmp, 'root/etc'), { recursive: true });
  fs.writeFileSync(path.join(tmp, 'root/etc/pacha.conf'), '[DEFAULT]\npacha.bogus = 1\npacha.state.path = /state\n');
  const fd = fs.openSync(file, 'w');
  try {
    const r = spawnSync(process.execPath, [PACHA_BIN, ...args], {
      env: { ...process.env, PACHA_ROOT_DIR: path.join(tmp, 'root'), PACHA_CONFIG: '', JOURNAL_STREAM: journalStream(file) },
      stdio: ['ignore', 'pipe', fd],
    });
    expect(r.error).toBeUndefined();
  } finally {
    fs.closeSync(fd);
  }
  return fs.readFileSync(file, 'utf8');
}

const devIno = (file: string) => {
  const st = fs.statSync(file, { bigint: true });
  return `${st.dev}:${st.ino}`;
};

describe('log lines for the journal', () => {
  it('prefix warnings <4>, information <6> and errors <3> when stderr is the journal stream', () => {
    const out = runWithStderrFile(['push'], devIno);
    const lines = out.trimEnd().split('\n');
    expect(lines.length).toBeGreaterThan(1);
    expect(lines).toContainEqual(expect.stringMatching(/^<4>warning: .*unknown key pacha\.bogus/));
    expect(lines).toContainEqual(expect.stringMatching(/^<6>no local snapshots yet/));
    for (const l of lines) {
      expect(l).toMatch(/^<[3467]>/);
      expect(l).not.toMatch(/\d{4}-\d\d-\d\dT\d\d:\d\d/); // journald keeps the time
    }
    const failed = runWithStderrFile(['--config', path.join(tmp, 'missing.conf'), 'push'], devIno);
    expect(failed).toMatch(/^<3>error: cannot read config file/m);
  });

  it('leave lines plain when JOURNAL_STREAM names another stream (stderr redirected)', () => {
    const out = runWithStderrFile(['push'], () => '1:2');
    expect(out).toMatch(/^warning: .*unknown key pacha\.bogus/m);
    expect(out).not.toMatch(/^</m);
  });

  it('give every line of a multi-line message its priority, debug <7>', () => {
    const stream = new PassThrough();
    let text = '';
    stream.on('data', (d) => (text += d));
    const log = createLogger({ stream, journal: true, verbose: true });
    log.debug('one');
    log.error('first line\nsecond line');
    expect(text).toBe('<7>one\n<3>error: first line\n<3>second line\n');
  });
});
