import net from 'node:net';
import ssh2 from 'ssh2';
import type { Connection, AuthContext } from 'ssh2';
import type { Logger } from '@pacha/shared/log';
import { PachaError, errorMessage } from '@pacha/shared/errors';
import { isValidHostName } from '@pacha/shared/master-tree';
import { loadHostKeys } from './authorized-keys.ts';
import { loadOrCreateHostKey } from './host-key.ts';
import { HOST_LIMIT_DEFAULTS, HostStates, type HostLimits } from './host-state.ts';
import { HostView, Refusal } from './host-view.ts';
import { MasterCounters } from './metrics.ts';
import { MASTER_COPY_PREFIX } from './append-only.ts';
import { serveSftp } from './sftp-session.ts';
import type { MasterLayout } from './layout.ts';

// `pacha-master serve`: an SSH server that speaks only SFTP. The SSH user name is the host
// name; each host logs in with its own key (<keys-dir>/<host>.pub) and sees only its folder.
// Limits (docs/security.md lists each with its default): connections in total; unauthenticated
// connections per source address and in total, with random early drop between the two marks
// of maxStartups (like OpenSSH's MaxStartups and PerSourceMaxStartups); time to send the SSH
// banner and to log in (an address whose connections time out counts failures); failed
// authentications per connection and per source address; connections, handles and one rename
// at a time per host (host-state.ts); idle time. Every count is taken in the same tick as the
// event it counts, never after an await. One log line per connection and per accepted push.

export interface ServeOptions {
  layout: MasterLayout;
  listenHost: string;
  listenPort: number;
  /** The pacha.hosts.path values the agents use (see host-view.ts). */
  virtualRoots: string[];
  maxConnections: number;
  /** Failed authentication attempts per connection before it is closed (OpenSSH MaxAuthTries). */
  maxAuthTries: number;
  /** Failed authentications from one address within `addressWindowMs` before it is refused for that long. */
  maxAddressFailures: number;
  addressWindowMs: number;
  /** Time allowed to authenticate (OpenSSH LoginGraceTime). */
  loginGraceMs: number;
  /** Time allowed to send the SSH identification line after connecting. */
  bannerTimeoutMs: number;
  /** Unauthenticated connections from one address at a time (OpenSSH PerSourceMaxStartups). */
  maxStartupsPerAddress: number;
  /** Unauthenticated connections in total: from `begin` on, new ones are dropped with probability `rate`% rising to 100% at `full` (OpenSSH MaxStartups begin:rate:full). */
  maxStartups: { begin: number; rate: number; full: number };
  /** Per host, over all its connections. */
  hostLimits: HostLimits;
  /** A session without requests for this long is closed. */
  idleTimeoutMs: number;
  log: Logger;
  /** Counted for --metrics (metrics.ts). */
  counters?: MasterCounters;
}

export const SERVE_DEFAULTS = {
  maxConnections: 256,
  maxAuthTries: 6,
  maxAddressFailures: 30,
  addressWindowMs: 60_000,
  loginGraceMs: 30_000,
  bannerTimeoutMs: 10_000,
  maxStartupsPerAddress: 64,
  maxStartups: { begin: 100, rate: 30, full: 200 },
  hostLimits: HOST_LIMIT_DEFAULTS,
  idleTimeoutMs: 600_000,
};

export interface RunningMaster {
  host: string;
  port: number;
  fingerprint: string;
  hostPublicKey: string;
  connections(): number;
  counters: MasterCounters;
  close(): Promise<void>;
}

export async function startMaster(opts: ServeOptions): Promise<RunningMaster> {
  const { log, layout } = opts;
  const counters = opts.counters ?? new MasterCounters();
  const hostKey = loadOrCreateHostKey(layout.hostKeyFile);
  if (hostKey.created) log.info(`created host key ${layout.hostKeyFile} (${hostKey.fingerprint})`);

  const hostStates = new HostStates(opts.hostLimits);
  // Unauthenticated connections, per address and in total.
  const unauth = new Map<string, number>();
  let unauthTotal = 0;
  const unauthDone = new WeakSet<net.Socket>();
  const leaveUnauth = (socket: net.Socket, ip: string) => {
    if (unauthDone.has(socket)) return;
    unauthDone.add(socket);
    unauthTotal--;
    const n = (unauth.get(ip) ?? 1) - 1;
    if (n <= 0) unauth.delete(ip);
    else unauth.set(ip, n);
  };
  /** Why a new connection from ip is dropped before its handshake, or null. */
  const startupRefusal = (ip: string): string | null => {
    const mine = unauth.get(ip) ?? 0;
    if (mine >= opts.maxStartupsPerAddress) return `${mine} unauthenticated connections from this address (limit ${opts.maxStartupsPerAddress})`;
    const { begin, rate, full } = opts.maxStartups;
    if (unauthTotal >= full) return `${unauthTotal} unauthenticated connections (limit ${full})`;
    if (unauthTotal >= begin) {
      const p = rate + ((100 - rate) * (unauthTotal - begin)) / Math.max(1, full - begin);
      if (Math.random() * 100 < p) return `${unauthTotal} unauthenticated connections: dropped early (${Math.round(p)}%)`;
    }
    return null;
  };

  const failures = new Map<string, { count: number; since: number }>();
  const addressBlocked = (ip: string): boolean => {
    const f = failures.get(ip);
    if (!f) return false;
    if (Date.now() - f.since > opts.addressWindowMs) {
      failures.delete(ip);
      return false;
    }
    return f.count >= opts.maxAddressFailures;
  };
  const noteFailure = (ip: string) => {
    // Bounded memory even when failures come from very many addresses: drop expired entries.
    if (failures.size > 10_000) {
      const now = Date.now();
      for (const [k, v] of failures) if (now - v.since > opts.addressWindowMs) failures.delete(k);
    }
    const f = failures.get(ip);
    if (!f || Date.now() - f.since > opts.addressWindowMs) failures.set(ip, { count: 1, since: Date.now() });
    else f.count++;
  };

  const sshServer = new ssh2.Server({ hostKeys: [hostKey.privateKey], ident: 'pacha-master' });
  let connSeq = 0;
  const live = new Set<net.Socket>();
  // Login grace runs on the socket: ssh2 announces a connection only after the client's banner.
  const graceTimers = new WeakMap<net.Socket, NodeJS.Timeout>();
  const bannerTimers = new WeakMap<net.Socket, NodeJS.Timeout>();
  const graceOutcome = new WeakMap<net.Socket, () => void>();
  // ssh2 names a connection's peer, not its socket: find the socket by the peer's address.
  const byPeer = new Map<string, net.Socket>();
  const peer = (ip: string | undefined, port: number | undefined) => `${ip}|${port}`;

  sshServer.on('connection', (client: Connection, info) => {
    const id = ++connSeq;
    const ip = info.ip;
    const started = Date.now();
    let user = '?';
    let authed = false;
    let authFailures = 0;
    let outcome = 'closed';
    let pushes = 0;
    const socket = byPeer.get(peer(info.ip, info.port));
    if (socket) {
      clearTimeout(bannerTimers.get(socket));
      graceOutcome.set(socket, () => (outcome = 'closed: login grace time exceeded'));
    }

    client.on('authentication', (ctx: AuthContext) => {
      user = ctx.username;
      if (authFailures >= opts.maxAuthTries) {
        ctx.reject(); // already closing: attempts in flight are not counted
        return;
      }
      if (ctx.method !== 'publickey') {
        // 'none' is how every client starts: not counted. Passwords are never accepted.
        if (ctx.method !== 'none') {
          authFailures++;
          counters.refuse('auth_failed');
        }
        ctx.reject(['publickey']);
      } else {
        const keys = isValidHostName(ctx.username) ? loadHostKeys(layout, ctx.username) : [];
        const key = keys.find((k) => k.getPublicSSH().equals(ctx.key.data));
        if (key === undefined) {
          authFailures++;
          counters.refuse('auth_failed');
          noteFailure(ip);
          ctx.reject(['publickey']);
        } else if (ctx.signature === undefined) {
          ctx.accept(); // "this key would do": the client signs next
          return;
        } else if (key.verify(ctx.blob!, ctx.signature, ctx.hashAlgo) === true) {
          ctx.accept();
          return;
        } else {
          authFailures++;
          counters.refuse('auth_failed');
          noteFailure(ip);
          ctx.reject(['publickey']);
        }
      }
      if (authFailures >= opts.maxAuthTries) {
        outcome = `closed: too many failed authentications (${authFailures})`;
        client.end();
      }
    });

    client.on('ready', () => {
      authed = true;
      // The idle timeout replaces the login grace from here on.
      if (socket) {
        clearTimeout(graceTimers.get(socket));
        leaveUnauth(socket, ip);
      }
      const host = hostStates.connect(user);
      if (host === null) {
        counters.refuse('host_connections');
        outcome = `closed: ${user} has ${opts.hostLimits.maxConnections} connections open already (limit per host)`;
        client.end();
        return;
      }
      client.once('close', () => hostStates.disconnect(host));
      const idle = setTimeout(() => {
        outcome = 'closed: idle timeout';
        client.end();
      }, opts.idleTimeoutMs);
      const touchIdle = () => idle.refresh();
      client.once('close', () => clearTimeout(idle));
      const view = new HostView(layout.hostsPath, user, opts.virtualRoots);
      let channels = 0;
      client.on('session', (accept) => {
        touchIdle();
        if (channels >= 4) return; // unaccepted: ssh2 rejects it
        channels++;
        const session = accept();
        session.on('sftp', async (acceptSftp) => {
          // Before the host's first session: leftovers of a crash removed, its temporary files counted.
          try {
            const removed = await host.prepare(await view.realHome());
            if (removed > 0) log.info(`host=${user}: removed ${removed} copy(ies) an interrupted rename left (${MASTER_COPY_PREFIX}*)`);
          } catch (e) {
            // A host without a folder gets the reason on each request (host-view.ts).
            if (!(e instanceof Refusal)) log.warn(`host=${user}: cannot look through its folder: ${errorMessage(e)}`);
          }
          // ssh2 answers nothing when the session ended meanwhile.
          const sftp: ReturnType<typeof acceptSftp> | undefined = acceptSftp();
          if (!sftp) {
            channels--;
            return;
          }
          serveSftp(sftp, view, {
            host,
            touch: touchIdle,
            onRefUpdate: (old, next) => {
              pushes++;
              counters.push(user);
              log.info(`push accepted: host=${user} main ${old ? old.slice(0, 12) : '(new)'}..${next.slice(0, 12)} conn=${id}`);
            },
            debug: (m) => log.debug(`conn=${id} ${m}`),
            onRefusal: (status) => counters.refuse(status === 'denied' ? 'sftp_denied' : 'sftp_failed'),
          });
          sftp.on('close', () => {
            channels--;
          });
        });
        for (const ev of ['exec', 'shell', 'pty', 'env', 'subsystem', 'x11', 'signal', 'auth-agent']) {
          session.on(ev, (acc: unknown, reject?: () => void) => {
            if (typeof reject === 'function') reject();
          });
        }
      });
      client.on('tcpip', (_a, reject) => reject());
      client.on('openssh.streamlocal', (_a, reject) => reject());
      client.on('request', (_a, reject) => reject?.());
    });

    client.on('error', (e) => {
      if (outcome === 'closed') outcome = `closed: ${e.message}`;
    });
    client.on('close', () => {
      const secs = ((Date.now() - started) / 1000).toFixed(1);
      const who = authed ? `host=${user}` : `user=${JSON.stringify(user)} not authenticated`;
      log.info(`connection ${id} from ${ip}: ${who}, ${outcome} after ${secs}s${pushes ? `, ${pushes} push(es)` : ''}${authFailures ? `, ${authFailures} failed auth` : ''}`);
    });
  });

  // Our own listener in front of ssh2's, so that refusals for load or abuse are logged.
  const tcp = net.createServer((socket) => {
    const ip = socket.remoteAddress ?? '?';
    socket.on('error', () => {}); // a reset before ssh2 takes the socket is not the server's concern
    if (live.size >= opts.maxConnections) {
      counters.refuse('max_connections');
      log.warn(`refused connection from ${ip}: ${live.size} connections open (limit ${opts.maxConnections}, --max-connections)`);
      socket.destroy();
      return;
    }
    if (addressBlocked(ip)) {
      counters.refuse('address_blocked');
      log.warn(`refused connection from ${ip}: too many failed authentications in the last ${opts.addressWindowMs / 1000}s`);
      socket.destroy();
      return;
    }
    const early = startupRefusal(ip);
    if (early !== null) {
      counters.refuse('max_startups');
      log.warn(`refused connection from ${ip}: ${early}`);
      socket.destroy();
      return;
    }
    live.add(socket);
    unauth.set(ip, (unauth.get(ip) ?? 0) + 1);
    unauthTotal++;
    const key = peer(socket.remoteAddress, socket.remotePort);
    byPeer.set(key, socket);
    counters.connections++;
    // A connection that never logs in counts as a failure of its address: idle connections
    // cannot hold slots again and again without the address being blocked.
    const banner = setTimeout(() => {
      counters.refuse('login_timeout');
      noteFailure(ip);
      log.info(`connection from ${ip}: closed: no SSH banner within ${opts.bannerTimeoutMs / 1000}s`);
      socket.destroy();
    }, opts.bannerTimeoutMs);
    bannerTimers.set(socket, banner);
    const grace = setTimeout(() => {
      counters.refuse('login_timeout');
      noteFailure(ip);
      const note = graceOutcome.get(socket);
      if (note) note();
      else log.info(`connection from ${ip}: closed: no SSH handshake within ${opts.loginGraceMs / 1000}s`);
      socket.destroy();
    }, opts.loginGraceMs);
    graceTimers.set(socket, grace);
    socket.once('close', () => {
      clearTimeout(grace);
      clearTimeout(banner);
      leaveUnauth(socket, ip);
      live.delete(socket);
      byPeer.delete(key);
    });
    socket.setNoDelay(true);
    sshServer.injectSocket(socket);
  });
  await new Promise<void>((resolve, reject) => {
    tcp.once('error', (e) => reject(new PachaError(`cannot listen on ${opts.listenHost}:${opts.listenPort}: ${e.message}`)));
    tcp.listen(opts.listenPort, opts.listenHost, () => resolve());
  });
  tcp.on('error', (e) => log.error(`listener: ${e.message}`));
  const addr = tcp.address() as net.AddressInfo;

  return {
    host: addr.address,
    port: addr.port,
    fingerprint: hostKey.fingerprint,
    hostPublicKey: hostKey.publicLine,
    connections: () => live.size,
    counters,
    close: () =>
      new Promise<void>((resolve) => {
        tcp.close(() => resolve());
        for (const s of live) s.destroy();
      }),
  };
}
