import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadConfig, parseConfig, parseSize } from '@pacha/shared/config';
import { UsageError } from '@pacha/shared/errors';
import { hostPath, toHostPath } from '@pacha/shared/paths';
import { cronProblem } from '@pacha/shared/schedule';

const ORIGINAL = path.resolve(import.meta.dirname, 'fixtures/original-pacha.conf');

function parse(text: string, env: NodeJS.ProcessEnv = {}) {
  return parseConfig(text, { file: '/etc/pacha.conf', root: '/', env: { HOME: '/root', ...env } });
}

describe('configuration', () => {
  it('loads the original Pacha documentation file unchanged', () => {
    const c = loadConfig({ configPath: ORIGINAL, env: { HOME: '/root' } });
    expect(c.frequencySeconds).toBe(12);
    expect(c.host).toBe('master.example.com');
    expect(c.sshUser).toBe('bar_user');
    expect(c.hostsPath).toBe('/pacha/hosts');
    expect(c.warnings).toEqual([]);
  });

  it('applies the documented defaults', () => {
    const c = parse('[DEFAULT]\n');
    expect(c.sshUser).toBe('root');
    expect(c.sshPort).toBe(22);
    expect(c.knownHostsFile).toBe('/root/.ssh/known_hosts');
    expect(c.hostsPath).toBe('/pacha/hosts');
    expect(c.frequencySeconds).toBe(60);
    expect(c.schedule).toBe('0 * * * *');
    expect(c.stateDir).toBe('/var/lib/pacha');
    expect(c.maxFileSize).toBe(256 * 1024 * 1024);
    expect(c.ignore).toContain('*.swp');
    expect(c.host).toBeUndefined();
    expect(c.hostname).toBe(os.hostname());
  });

  it('names the key, the line and what is accepted for a bad value', () => {
    const text = '[DEFAULT]\n# comment\npacha.host = m\npacha.ssh.port = 99999\n';
    expect(() => parse(text)).toThrow(UsageError);
    expect(() => parse(text)).toThrow(/\/etc\/pacha.conf:4: pacha.ssh.port: "99999" is not a port \(accepted: an integer 1-65535\)/);
    expect(() => parse('[DEFAULT]\npacha.frequency = soon\n')).toThrow(/:2: pacha.frequency: .*accepted/);
    expect(() => parse('[DEFAULT]\npacha.schedule = every hour\n')).toThrow(/pacha.schedule: "every hour" is not a cron expression/);
    // The shape is checked everywhere; the values by the cron library where the schedule is used.
    const outOfRange = '[DEFAULT]\npacha.schedule = 61 * * * *\n';
    expect(parse(outOfRange).schedule).toBe('61 * * * *');
    expect(() => parseConfig(outOfRange, { file: '/etc/pacha.conf', root: '/', scheduleCheck: cronProblem })).toThrow(/:2: pacha.schedule: "61 \* \* \* \*" is not a cron expression/);
    expect(parseConfig('[DEFAULT]\npacha.schedule = @daily\n', { file: null, root: '/', scheduleCheck: cronProblem }).schedule).toBe('@daily');
    expect(() => parse('[DEFAULT]\npacha.max_file_size = big\n')).toThrow(/pacha.max_file_size/);
    expect(() => parse('[DEFAULT]\npacha.callback.url = ftp://x\n')).toThrow(/pacha.callback.url/);
    expect(() => parse('[DEFAULT]\npacha.watch = etc/nginx\n')).toThrow(/pacha.watch: "etc\/nginx" is not an absolute path/);
    expect(() => parse('[DEFAULT]\npacha.hostname = ../x\n')).toThrow(/pacha.hostname/);
  });

  it('warns about unknown keys and keys outside [DEFAULT], with their line', () => {
    const c = parse('[DEFAULT]\npacha.hots = x\n[other]\npacha.host = y\n');
    expect(c.warnings.map((w) => [w.key, w.line])).toEqual([
      ['pacha.hots', 2],
      ['pacha.host', 4],
    ]);
    expect(c.warnings[0].message).toMatch(/unknown key pacha.hots/);
    expect(c.host).toBeUndefined();
  });

  it('parses lists and sizes', () => {
    const c = parse('[DEFAULT]\npacha.watch = /etc/nginx/ , /opt/app,\npacha.ignore = *.bak, *.tmp\npacha.max_file_size = 10M\n');
    expect(c.watch).toEqual(['/etc/nginx', '/opt/app']);
    expect(c.ignore).toEqual(['*.bak', '*.tmp']);
    expect(c.maxFileSize).toBe(10 * 1024 * 1024);
    expect(parseSize('4096')).toBe(4096);
    expect(parseSize('1.5KiB')).toBe(1536);
    expect(parseSize('12 parsecs')).toBeNull();
  });

  it('resolves host paths named in the config under PACHA_ROOT_DIR, and not --config', () => {
    const root = fs.mkdtempSync(path.join(os.tmpdir(), 'pacha-cfg-'));
    try {
      fs.mkdirSync(path.join(root, 'etc'));
      fs.writeFileSync(path.join(root, 'etc/pacha.conf'), '[DEFAULT]\npacha.ssh.key = /etc/pacha/id\npacha.log.path = /var/log/pacha.log\n');
      const c = loadConfig({ env: { PACHA_ROOT_DIR: root, HOME: '/root' } });
      expect(c.file).toBe(path.join(root, 'etc/pacha.conf'));
      expect(c.sshKeyFile).toBe(path.join(root, 'etc/pacha/id'));
      expect(c.logFile).toBe(path.join(root, 'var/log/pacha.log'));
      expect(c.stateDir).toBe(path.join(root, 'var/lib/pacha'));
      expect(c.knownHostsFile).toBe(path.join(root, 'root/.ssh/known_hosts'));
      // An explicit --config is taken as given.
      const other = path.join(root, 'other.conf');
      fs.writeFileSync(other, '[DEFAULT]\npacha.frequency = 5\n');
      expect(loadConfig({ configPath: other, env: { PACHA_ROOT_DIR: root } }).frequencySeconds).toBe(5);
      expect(() => loadConfig({ configPath: path.join(root, 'missing.conf'), env: {} })).toThrow(/cannot read config file/);
      expect(hostPath('/etc/x', root)).toBe(path.join(root, 'etc/x'));
      expect(toHostPath(path.join(root, 'etc/x'), root)).toBe('/etc/x');
      expect(toHostPath('/elsewhere', root)).toBeNull();
    } finally {
      fs.rmSync(root, { recursive: true, force: true });
    }
  });

  it('pacha.accounts: a list of user and group names', () => {
    expect(parse('[DEFAULT]\npacha.accounts = postgres, www-data,backup$\n').accounts).toEqual(['postgres', 'www-data', 'backup$']);
    expect(parse('[DEFAULT]\n').accounts).toEqual([]);
    expect(() => parse('[DEFAULT]\npacha.accounts = postgres, bad:name\n')).toThrow(/:2: pacha.accounts: "bad:name" is not a user or group name \(accepted: comma-separated names/);
  });
});
