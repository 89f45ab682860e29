import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { isValidHostName, masterHostPaths } from '@pacha/shared/master-tree';
import { PachaError } from '@pacha/shared/errors';
import type { Logger } from '@pacha/shared/log';
import { gauge, renderMetrics, type Metric } from '@pacha/shared/metrics';
import { PACHA_VERSION } from '@pacha/shared/version';
import type { MasterLayout } from './layout.ts';

// `pacha-master serve --metrics ADDR:PORT`: Prometheus text on http://ADDR:PORT/metrics.
// Counters live in the server process (they start at 0 on each start, as Prometheus expects of
// a counter); what is on disk (hosts, the time of each host's last push) is read at each scrape,
// so it is right whoever wrote it. The names are documented in docs/install.md.

/** Why the master turned something away: a connection, an authentication or an SFTP request. */
export type RefusalReason =
  | 'max_connections' // --max-connections reached
  | 'address_blocked' // too many failed authentications from the address (--max-address-failures)
  | 'auth_failed' // a public key that is not the host's, or a bad signature, or a password
  | 'login_timeout' // no SSH banner within --banner-timeout, or not authenticated within --login-grace
  | 'max_startups' // too many unauthenticated connections from the address or in total (--max-startups)
  | 'host_connections' // the host has its maximum of connections open
  | 'sftp_denied' // a request outside the host's allowlist (hooks, another host, history rewrite)
  | 'sftp_failed'; // a request refused after checking it (e.g. a pack or ref that does not verify)

export class MasterCounters {
  /** TCP connections accepted (refused ones are counted as refusals). */
  connections = 0;
  readonly refusals = new Map<RefusalReason, number>();
  /** Accepted ref updates per host. */
  readonly pushes = new Map<string, number>();

  refuse(reason: RefusalReason): void {
    this.refusals.set(reason, (this.refusals.get(reason) ?? 0) + 1);
  }

  push(host: string): void {
    this.pushes.set(host, (this.pushes.get(host) ?? 0) + 1);
  }
}

export function masterMetrics(layout: MasterLayout, counters: MasterCounters, openConnections: number): Metric[] {
  const lastPush: Metric = { name: 'pacha_master_last_push_timestamp_seconds', help: "time of each host's last accepted push (its refs/heads/main)", type: 'gauge', samples: [] };
  let hosts = 0;
  let names: string[] = [];
  try {
    names = fs.readdirSync(layout.hostsPath).filter(isValidHostName).sort();
  } catch {
    // No hosts folder yet: no hosts.
  }
  for (const host of names) {
    let st: fs.Stats;
    try {
      st = fs.statSync(path.join(layout.hostsPath, host));
    } catch {
      continue;
    }
    if (!st.isDirectory()) continue;
    hosts++;
    try {
      lastPush.samples.push({ labels: { host }, value: fs.statSync(`${masterHostPaths(layout.hostsPath, host).repo}/refs/heads/main`).mtimeMs / 1000 });
    } catch {
      // Authorised or created, never pushed.
    }
  }
  const reasons: RefusalReason[] = ['max_connections', 'max_startups', 'address_blocked', 'auth_failed', 'login_timeout', 'host_connections', 'sftp_denied', 'sftp_failed'];
  return [
    gauge('pacha_master_info', 'pacha master version (always 1)', 1, { version: PACHA_VERSION }),
    gauge('pacha_master_hosts', 'host folders under the hosts path', hosts),
    lastPush,
    { name: 'pacha_master_pushes_total', help: 'accepted pushes (ref updates) per host since the server started', type: 'counter', samples: [...counters.pushes].sort().map(([host, value]) => ({ labels: { host }, value })) },
    gauge('pacha_master_connections', 'connections open now', openConnections),
    { name: 'pacha_master_connections_total', help: 'connections accepted since the server started', type: 'counter', samples: [{ value: counters.connections }] },
    { name: 'pacha_master_refusals_total', help: 'connections, authentications and SFTP requests refused since the server started, by reason', type: 'counter', samples: reasons.map((reason) => ({ labels: { reason }, value: counters.refusals.get(reason) ?? 0 })) },
  ];
}

export interface MetricsServer {
  host: string;
  port: number;
  close(): Promise<void>;
}

/** An HTTP listener answering GET /metrics with `render()`; every other path is 404. */
export async function serveMetrics(listenHost: string, listenPort: number, render: () => string, log: Logger): Promise<MetricsServer> {
  const server = http.createServer((req, res) => {
    const url = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD' }).end();
    } else if (url !== '/metrics') {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('pacha-master: metrics are at /metrics\n');
    } else {
      let body: string;
      try {
        body = render();
      } catch (e) {
        log.warn(`metrics: ${(e as Error).message}`);
        res.writeHead(500).end();
        return;
      }
      res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4; charset=utf-8' }).end(req.method === 'HEAD' ? undefined : body);
    }
  });
  server.requestTimeout = 10_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', (e) => reject(new PachaError(`cannot listen for metrics on ${listenHost}:${listenPort}: ${e.message}`)));
    server.listen(listenPort, listenHost, () => resolve());
  });
  server.on('error', (e) => log.error(`metrics listener: ${e.message}`));
  const addr = server.address() as { address: string; port: number };
  return {
    host: addr.address,
    port: addr.port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

/** Prometheus text for a running master. */
export function renderMasterMetrics(layout: MasterLayout, counters: MasterCounters, openConnections: number): string {
  return renderMetrics(masterMetrics(layout, counters, openConnections));
}
