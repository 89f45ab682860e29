import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import ini from 'ini';
import { callbackRequest, maskUrl } from './callback.ts';
import { UsageError } from './errors.ts';
import { isAccountName } from './accounts.ts';
import { expandHome, hostPath, rootDir } from './paths.ts';
import { HOST_NAME_ACCEPTED, isValidHostName } from './master-tree.ts';

// /etc/pacha.conf: INI with every key in [DEFAULT], compatible with the original Pacha's files.

export const DEFAULT_CONFIG_PATH = '/etc/pacha.conf';
export const DEFAULT_IGNORE = ['*.swp', '*.swo', '*.swx', '*~', '.#*', '#*#', '4913', '*.dpkg-tmp'];
export const DEFAULT_SCHEDULE = '0 * * * *';

export interface ConfigProblem {
  key?: string;
  line?: number;
  message: string;
}

export interface PachaConfig {
  /** The file that was read (null when the default file does not exist and defaults apply). */
  file: string | null;
  root: string;
  host: string | undefined;
  sshUser: string;
  sshPort: number;
  /** Local paths, already resolved under the root dir. */
  sshKeyFile: string | undefined;
  knownHostsFile: string;
  /** Path on the master (never resolved locally). */
  hostsPath: string;
  hostname: string;
  frequencySeconds: number;
  schedule: string;
  /** Host paths (absolute, normalised) from pacha.watch. */
  watch: string[];
  ignore: string[];
  stateDir: string;
  logFile: string | undefined;
  /** node_exporter textfile (pacha.metrics.path), resolved under the root dir; unset: no metrics. */
  metricsFile: string | undefined;
  callbackUrl: string | undefined;
  maxFileSize: number;
  /** User and group names from pacha.accounts, recorded in .pacha/accounts besides the owners of recorded paths. */
  accounts: string[];
  /** Effective values by key, as shown by `pacha check-config`. */
  effective: Record<string, string>;
  warnings: ConfigProblem[];
}

interface KeySpec {
  default: string | undefined;
  help: string;
}

export const CONFIG_KEYS: Record<string, KeySpec> = {
  'pacha.host': { default: undefined, help: "master's SSH host" },
  'pacha.ssh.user': { default: 'root', help: 'SSH user on the master' },
  'pacha.ssh.port': { default: '22', help: 'SSH port' },
  'pacha.ssh.key': { default: undefined, help: 'private key file' },
  'pacha.ssh.known_hosts': { default: '~/.ssh/known_hosts', help: 'known_hosts file used to verify the master' },
  'pacha.hosts.path': { default: '/pacha/hosts', help: 'folder on the master holding one folder per host' },
  'pacha.hostname': { default: undefined, help: "this host's name on the master" },
  'pacha.frequency': { default: '60', help: 'seconds between a change and its push' },
  'pacha.schedule': { default: DEFAULT_SCHEDULE, help: 'cron expression of the full reconcile scan' },
  'pacha.watch': { default: '', help: 'comma-separated paths watched in addition to `pacha watch`' },
  'pacha.ignore': { default: DEFAULT_IGNORE.join(','), help: 'comma-separated glob patterns never snapshotted' },
  'pacha.state.path': { default: '/var/lib/pacha', help: 'agent state directory' },
  'pacha.log.path': { default: undefined, help: 'log file' },
  'pacha.callback.url': { default: undefined, help: 'URL receiving a JSON POST after push failures and rebuilds' },
  'pacha.max_file_size': { default: '256MiB', help: 'larger files are skipped with a warning' },
  'pacha.metrics.path': { default: undefined, help: 'node_exporter textfile the agent writes its metrics to' },
  'pacha.accounts': { default: '', help: 'comma-separated user and group names recorded in .pacha/accounts besides the owners of recorded paths' },
};

export interface LoadOptions {
  /** --config: taken as given. */
  configPath?: string;
  env?: NodeJS.ProcessEnv;
  /**
   * Parses pacha.schedule fully: what is wrong, or null. The daemon and check-config pass
   * cronProblem (schedule.ts); other commands, which never use the schedule, check only its
   * shape and do not load the cron library (which would slow their start-up).
   */
  scheduleCheck?: (expr: string) => string | null;
}

const CRON_PRESET = /^@(yearly|annually|monthly|weekly|daily|hourly|minutely|secondly|weekdays|weekends)$/i;
const CRON_FIELD = /^[0-9a-z*?#/,-]+$/i;

/** What is wrong with the shape of a cron expression (five or six fields, or a preset), or null. */
export function cronShapeProblem(expr: string): string | null {
  const t = expr.trim();
  if (CRON_PRESET.test(t)) return null;
  const fields = t.split(/\s+/);
  if (fields.length < 5 || fields.length > 6) return `it has ${fields.length} field${fields.length === 1 ? '' : 's'}`;
  const bad = fields.find((f) => !CRON_FIELD.test(f));
  return bad === undefined ? null : `"${bad}" is not a cron field`;
}

/** Locate and parse the configuration. Throws UsageError naming key, line and what is accepted. */
export function loadConfig(opts: LoadOptions = {}): PachaConfig {
  const env = opts.env ?? process.env;
  const root = rootDir(env);
  const explicit = opts.configPath ?? (env.PACHA_CONFIG && env.PACHA_CONFIG.length > 0 ? env.PACHA_CONFIG : undefined);
  const file = explicit ? path.resolve(explicit) : hostPath(DEFAULT_CONFIG_PATH, root);
  let text = '';
  let found = true;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' && !explicit) found = false;
    else throw new UsageError(`cannot read config file ${file}: ${(e as Error).message}`);
  }
  return parseConfig(text, { file: found ? file : null, root, env, scheduleCheck: opts.scheduleCheck });
}

export function parseConfig(text: string, ctx: { file: string | null; root: string; env?: NodeJS.ProcessEnv; scheduleCheck?: LoadOptions['scheduleCheck'] }): PachaConfig {
  const env = ctx.env ?? process.env;
  const where = ctx.file ?? '(defaults)';
  const lines = text.split(/\r?\n/);
  const lineOf = (key: string): number | undefined => {
    const re = new RegExp(`^\\s*${key.replace(/\./g, '\\.')}\\s*[=:]`);
    const i = lines.findIndex((l) => re.test(l));
    return i >= 0 ? i + 1 : undefined;
  };
  const fail = (key: string, message: string): never => {
    const line = lineOf(key);
    throw new UsageError(`${where}${line ? `:${line}` : ''}: ${key}: ${message}`);
  };

  const parsed = ini.parse(text) as Record<string, unknown>;
  const values: Record<string, string> = {};
  const warnings: ConfigProblem[] = [];
  const take = (section: string | null, obj: Record<string, unknown>) => {
    for (const [k, v] of Object.entries(obj)) {
      if (v !== null && typeof v === 'object') {
        if (section === null) take(k, v as Record<string, unknown>);
        continue;
      }
      if (section !== null && section !== 'DEFAULT') {
        warnings.push({ key: k, line: lineOf(k), message: `key ${k} in section [${section}] is ignored: pacha reads keys in [DEFAULT]` });
        continue;
      }
      if (!(k in CONFIG_KEYS)) {
        warnings.push({ key: k, line: lineOf(k), message: `unknown key ${k} (known keys: ${Object.keys(CONFIG_KEYS).join(', ')})` });
        continue;
      }
      values[k] = typeof v === 'string' ? v.trim() : String(v);
    }
  };
  take(null, parsed);

  const get = (key: string): string | undefined => {
    const v = values[key];
    if (v !== undefined && v !== '') return v;
    return CONFIG_KEYS[key].default;
  };
  const local = (hostAbs: string) => hostPath(expandHome(hostAbs, env), ctx.root);
  const absKey = (key: string): string | undefined => {
    const v = get(key);
    if (v === undefined) return undefined;
    const e = expandHome(v, env);
    if (!path.posix.isAbsolute(e)) fail(key, `"${v}" is not an absolute path (accepted: /absolute/path or ~/path)`);
    return e;
  };

  const port = Number(get('pacha.ssh.port'));
  if (!Number.isInteger(port) || port < 1 || port > 65535) fail('pacha.ssh.port', `"${get('pacha.ssh.port')}" is not a port (accepted: an integer 1-65535)`);
  const frequency = Number(get('pacha.frequency'));
  if (!Number.isFinite(frequency) || frequency < 0) fail('pacha.frequency', `"${get('pacha.frequency')}" is not a number of seconds (accepted: 0 or more, e.g. 60)`);
  const schedule = get('pacha.schedule')!;
  // The default is known to be good (parsing one loads time-zone data).
  const scheduleProblem = schedule === DEFAULT_SCHEDULE ? null : (cronShapeProblem(schedule) ?? ctx.scheduleCheck?.(schedule) ?? null);
  if (scheduleProblem !== null) {
    fail('pacha.schedule', `"${schedule}" is not a cron expression (${scheduleProblem}; accepted: five or six fields, e.g. "0 * * * *", or @hourly, @daily...)`);
  }
  const maxFileSize = parseSize(get('pacha.max_file_size')!);
  if (maxFileSize === null) fail('pacha.max_file_size', `"${get('pacha.max_file_size')}" is not a size (accepted: bytes or a number with K, M, G, KiB, MiB, GiB)`);
  const callbackUrl = get('pacha.callback.url');
  if (callbackUrl !== undefined) {
    let ok = false;
    try {
      const u = new URL(callbackUrl);
      ok = u.protocol === 'http:' || u.protocol === 'https:';
      callbackRequest(callbackUrl); // its password is registered with the logger as a secret
    } catch {
      ok = false;
    }
    if (!ok) fail('pacha.callback.url', `"${maskUrl(callbackUrl)}" is not a URL (accepted: http:// or https:// URL, credentials as https://user:password@host/...)`);
  }
  const hostsPath = get('pacha.hosts.path')!;
  if (!hostsPath.startsWith('/')) fail('pacha.hosts.path', `"${hostsPath}" is not an absolute path on the master (accepted: /absolute/path)`);
  const hostname = get('pacha.hostname') ?? os.hostname();
  if (!isValidHostName(hostname)) fail('pacha.hostname', `"${hostname}" is not a usable host name (accepted: ${HOST_NAME_ACCEPTED})`);
  const watch = splitList(get('pacha.watch')!).map((p) => {
    const e = expandHome(p, env);
    if (!path.posix.isAbsolute(e)) fail('pacha.watch', `"${p}" is not an absolute path (accepted: comma-separated absolute paths)`);
    return path.posix.normalize(e).replace(/(.)\/+$/, '$1');
  });

  const accounts = splitList(get('pacha.accounts')!);
  for (const a of accounts) {
    if (!isAccountName(a)) fail('pacha.accounts', `"${a}" is not a user or group name (accepted: comma-separated names of letters, digits, '_', '.', '-', not starting with '-')`);
  }

  const sshKey = absKey('pacha.ssh.key');
  const knownHosts = absKey('pacha.ssh.known_hosts')!;
  const state = absKey('pacha.state.path')!;
  const logPath = absKey('pacha.log.path');
  const metricsPath = absKey('pacha.metrics.path');
  const effective: Record<string, string> = {};
  for (const k of Object.keys(CONFIG_KEYS)) {
    const v = k === 'pacha.hostname' ? hostname : get(k);
    // Shown by check-config (and --json): the callback's credentials never are.
    if (v !== undefined) effective[k] = k === 'pacha.callback.url' ? maskUrl(v) : v;
  }
  return {
    file: ctx.file,
    root: ctx.root,
    host: get('pacha.host'),
    sshUser: get('pacha.ssh.user')!,
    sshPort: port,
    sshKeyFile: sshKey ? local(sshKey) : undefined,
    knownHostsFile: local(knownHosts),
    hostsPath: path.posix.normalize(hostsPath),
    hostname,
    frequencySeconds: frequency,
    schedule,
    watch,
    ignore: splitList(get('pacha.ignore')!),
    stateDir: local(state),
    logFile: logPath ? local(logPath) : undefined,
    metricsFile: metricsPath ? local(metricsPath) : undefined,
    callbackUrl,
    maxFileSize: maxFileSize!,
    accounts,
    effective,
    warnings,
  };
}

export function splitList(v: string): string[] {
  return v
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
}

const UNITS: Record<string, number> = {
  '': 1, b: 1,
  k: 1024, kb: 1024, kib: 1024,
  m: 1024 ** 2, mb: 1024 ** 2, mib: 1024 ** 2,
  g: 1024 ** 3, gb: 1024 ** 3, gib: 1024 ** 3,
  t: 1024 ** 4, tb: 1024 ** 4, tib: 1024 ** 4,
};

/** "256MiB", "10M", "4096" -> bytes; null when not a size. Binary units throughout. */
export function parseSize(v: string): number | null {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/.exec(v);
  if (!m) return null;
  const unit = UNITS[m[2].toLowerCase()];
  if (unit === undefined) return null;
  return Math.floor(Number(m[1]) * unit);
}
