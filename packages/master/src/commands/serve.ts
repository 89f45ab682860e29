import type { CommandModule } from 'yargs';
import { createLogger } from '@pacha/shared/log';
import { UsageError } from '@pacha/shared/errors';
import { parseSize } from '@pacha/shared/config';
import { masterLayout, DEFAULT_HOSTS_PATH, DEFAULT_VIRTUAL_HOSTS_PATH } from '../layout.ts';
import { renderMasterMetrics, serveMetrics, type MetricsServer } from '../metrics.ts';
import { SERVE_DEFAULTS, startMaster } from '../server.ts';

interface ServeArgs {
  listen: string;
  'hosts-path'?: string;
  'host-key'?: string;
  'keys-dir'?: string;
  'virtual-path': string[];
  'max-connections': number;
  'max-auth-tries': number;
  'max-address-failures': number;
  'idle-timeout': number;
  'login-grace': number;
  'banner-timeout': number;
  'max-startups': string;
  'max-startups-per-address': number;
  'max-host-connections': number;
  'max-host-handles': number;
  'max-host-temp': string;
  'log-file'?: string;
  metrics?: string;
  verbose?: boolean;
}

export const DEFAULT_LISTEN = '0.0.0.0:2222';

/** "ADDR:PORT", "[v6]:PORT" or ":PORT" -> host and port. */
export function parseListen(v: string, option = '--listen'): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d+)$/.exec(v);
  const port = m ? Number(m[3]) : NaN;
  if (!m || !Number.isInteger(port) || port < 0 || port > 65535) {
    throw new UsageError(`${option} ${v}: not an address and port (accepted: ADDR:PORT such as ${option === '--listen' ? '0.0.0.0:2222, [::]:2222' : '127.0.0.1:9474, [::]:9474'}, 127.0.0.1:0 for any free port)`);
  }
  return { host: m[1] ?? (m[2] || '0.0.0.0'), port };
}

export const serveCommand: CommandModule<{}, ServeArgs> = {
  command: 'serve',
  describe: 'run the embedded SFTP master',
  builder: (y) =>
    y
      .option('listen', { type: 'string', default: DEFAULT_LISTEN, describe: 'address and port to listen on' })
      .option('hosts-path', { type: 'string', describe: `folder holding one folder per host (default ${DEFAULT_HOSTS_PATH} under PACHA_ROOT_DIR)` })
      .option('host-key', { type: 'string', describe: "the server's ed25519 host key, created on first start (default <hosts-path>/../ssh_host_ed25519_key)" })
      .option('keys-dir', { type: 'string', describe: "hosts' public keys, <host>.pub (default <hosts-path>/../keys)" })
      .option('virtual-path', { type: 'string', array: true, default: [DEFAULT_VIRTUAL_HOSTS_PATH], describe: "the agents' pacha.hosts.path (repeatable)" })
      .option('max-connections', { type: 'number', default: SERVE_DEFAULTS.maxConnections, describe: 'open connections at most' })
      .option('max-auth-tries', { type: 'number', default: SERVE_DEFAULTS.maxAuthTries, describe: 'failed authentications per connection' })
      .option('max-address-failures', { type: 'number', default: SERVE_DEFAULTS.maxAddressFailures, describe: 'failed authentications from one address per minute before it is refused for the rest of that minute' })
      .option('idle-timeout', { type: 'number', default: SERVE_DEFAULTS.idleTimeoutMs / 1000, describe: 'seconds before an idle session is closed' })
      .option('login-grace', { type: 'number', default: SERVE_DEFAULTS.loginGraceMs / 1000, describe: 'seconds allowed to authenticate' })
      .option('banner-timeout', { type: 'number', default: SERVE_DEFAULTS.bannerTimeoutMs / 1000, describe: 'seconds allowed to send the SSH banner after connecting' })
      .option('max-startups', { type: 'string', default: `${SERVE_DEFAULTS.maxStartups.begin}:${SERVE_DEFAULTS.maxStartups.rate}:${SERVE_DEFAULTS.maxStartups.full}`, describe: 'unauthenticated connections in total, begin:rate:full as OpenSSH MaxStartups (random early drop from begin, all dropped at full)' })
      .option('max-startups-per-address', { type: 'number', default: SERVE_DEFAULTS.maxStartupsPerAddress, describe: 'unauthenticated connections from one address at a time' })
      .option('max-host-connections', { type: 'number', default: SERVE_DEFAULTS.hostLimits.maxConnections, describe: 'authenticated connections of one host at a time' })
      .option('max-host-handles', { type: 'number', default: SERVE_DEFAULTS.hostLimits.maxHandles, describe: 'open files and folders of one host, over all its connections' })
      .option('max-host-temp', { type: 'string', default: `${SERVE_DEFAULTS.hostLimits.maxTempBytes / 1024 ** 3}GiB`, describe: "bytes of one host's unfinished uploads (temporary files) on the master's disk" })
      .option('log-file', { type: 'string', describe: 'also log to this file' })
      .option('metrics', { type: 'string', describe: 'serve Prometheus metrics on http://ADDR:PORT/metrics (off by default)' }),
  handler: async (args) => {
    const { host, port } = parseListen(args.listen);
    const metricsAt = args.metrics !== undefined ? parseListen(args.metrics, '--metrics') : undefined;
    for (const [name, v] of [['max-connections', args['max-connections']], ['max-auth-tries', args['max-auth-tries']], ['max-address-failures', args['max-address-failures']], ['max-startups-per-address', args['max-startups-per-address']], ['max-host-connections', args['max-host-connections']], ['max-host-handles', args['max-host-handles']]] as const) {
      if (!Number.isInteger(v) || v < 1) throw new UsageError(`--${name} ${v}: accepted: a whole number of 1 or more`);
    }
    const maxTemp = parseSize(args['max-host-temp']);
    if (maxTemp === null || maxTemp < 1) throw new UsageError(`--max-host-temp ${args['max-host-temp']}: not a size (accepted: bytes or a number with K, M, G, KiB, MiB, GiB, e.g. 32GiB)`);
    const startups = /^(\d+):(\d+):(\d+)$/.exec(args['max-startups']);
    const [begin, rate, full] = startups ? startups.slice(1).map(Number) : [NaN, NaN, NaN];
    if (!startups || begin < 1 || rate > 100 || full < begin) throw new UsageError(`--max-startups ${args['max-startups']}: accepted: begin:rate:full, whole numbers with 1 <= begin <= full and rate <= 100 (e.g. 100:30:200)`);
    for (const [name, v] of [['idle-timeout', args['idle-timeout']], ['login-grace', args['login-grace']], ['banner-timeout', args['banner-timeout']]] as const) {
      if (!Number.isFinite(v) || v <= 0) throw new UsageError(`--${name} ${v}: accepted: seconds, more than 0`);
    }
    for (const v of args['virtual-path']) {
      if (!v.startsWith('/')) throw new UsageError(`--virtual-path ${v}: accepted: an absolute path such as ${DEFAULT_VIRTUAL_HOSTS_PATH}`);
    }
    const log = createLogger({ verbose: args.verbose === true, file: args['log-file'] });
    const layout = masterLayout({ hostsPath: args['hosts-path'], keysDir: args['keys-dir'], hostKey: args['host-key'] });
    const master = await startMaster({
      ...SERVE_DEFAULTS,
      layout,
      listenHost: host,
      listenPort: port,
      virtualRoots: args['virtual-path'],
      maxConnections: args['max-connections'],
      maxAuthTries: args['max-auth-tries'],
      maxAddressFailures: args['max-address-failures'],
      idleTimeoutMs: args['idle-timeout'] * 1000,
      loginGraceMs: args['login-grace'] * 1000,
      bannerTimeoutMs: args['banner-timeout'] * 1000,
      maxStartups: { begin, rate, full },
      maxStartupsPerAddress: args['max-startups-per-address'],
      hostLimits: { maxConnections: args['max-host-connections'], maxHandles: args['max-host-handles'], maxTempBytes: maxTemp },
      log,
    });
    let metrics: MetricsServer | undefined;
    if (metricsAt) {
      try {
        metrics = await serveMetrics(metricsAt.host, metricsAt.port, () => renderMasterMetrics(layout, master.counters, master.connections()), log);
      } catch (e) {
        await master.close();
        throw e;
      }
    }
    // Tests and supervisors read this line for the port (with --listen ...:0).
    log.info(`pacha-master listening on ${master.host}:${master.port}; hosts ${layout.hostsPath}, keys ${layout.keysDir}; host key ${master.hostPublicKey.split(' ')[0]} ${master.fingerprint}`);
    if (metrics) log.info(`metrics on http://${metrics.host.includes(':') ? `[${metrics.host}]` : metrics.host}:${metrics.port}/metrics`);
    await new Promise<void>((resolve) => {
      const stop = (sig: string) => {
        log.info(`${sig}: stopping`);
        void Promise.all([master.close(), metrics?.close()]).then(() => resolve());
      };
      process.once('SIGTERM', () => stop('SIGTERM'));
      process.once('SIGINT', () => stop('SIGINT'));
    });
  },
};
