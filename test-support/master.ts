import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { MASTER_BIN, REPO_DIR } from './cli.ts';
import { generateKey, killOnExit, stopChild, type ClientKey, type SshdHandle } from './sshd.ts';
import type { TestHost } from './host.ts';
import { authorizeHost } from '@pacha/master/authorized-keys';
import { masterLayout, DEFAULT_VIRTUAL_HOSTS_PATH } from '@pacha/master/layout';

// The embedded master (`pacha-master serve`) as a child process on a free loopback port, in a
// temporary folder, with client keys generated and authorised per host on demand.
// Also: SftpTarget, one shape for "a master the agent can push to" (embedded or OpenSSH),
// and writeAgentConfig() which points a test host (test-support/host.ts) at one.

export interface MasterHandle {
  port: number;
  /** The real folder holding one folder per host (what `pacha-master hosts/log/verify --hosts-path` take). */
  hostsPath: string;
  keysDir: string;
  hostKeyFile: string;
  /** The path agents use as pacha.hosts.path (/pacha/hosts). */
  virtualHostsPath: string;
  /** "[127.0.0.1]:PORT ssh-ed25519 AAAA..." */
  knownHostsLine: string;
  /** Private key file for a host: generated and authorised on first call. */
  keyFor(host: string): string;
  /** The key pair of a host (generated and authorised on first call). */
  clientKey(host: string): ClientKey;
  /** The master's folder on disk for a host. */
  hostDir(host: string): string;
  /** The temp folder holding everything. */
  dir: string;
  pid(): number;
  /** Everything the server logged so far. */
  output(): string;
  /** Wait until the log contains a line matching re. */
  waitForLog(re: RegExp, timeoutMs?: number): Promise<string>;
  stop(): Promise<void>;
}

export interface StartMasterOptions {
  /** Authorise these hosts before starting. */
  hosts?: string[];
  /** Extra `serve` arguments, e.g. ['--idle-timeout', '1']. */
  args?: string[];
  tmpDir?: string;
  env?: NodeJS.ProcessEnv;
  /** Reuse a folder (restart tests): hosts/, keys/ and the host key are kept there. */
  dir?: string;
  /** The program to run instead of this checkout's bin (the packaged one): argv before `serve`. */
  command?: string[];
}

export async function startMaster(opts: StartMasterOptions = {}): Promise<MasterHandle> {
  const dir = opts.dir ?? fs.mkdtempSync(path.join(opts.tmpDir ?? os.tmpdir(), 'pacha-master-'));
  const layout = masterLayout({ hostsPath: path.join(dir, 'hosts') });
  fs.mkdirSync(layout.hostsPath, { recursive: true });
  const clientKeysDir = path.join(dir, 'client-keys');
  fs.mkdirSync(clientKeysDir, { recursive: true, mode: 0o700 });
  const keys = new Map<string, ClientKey>();
  const clientKey = (host: string): ClientKey => {
    let k = keys.get(host);
    if (!k) {
      const file = path.join(clientKeysDir, `${host}_ed25519`);
      k = fs.existsSync(file) ? { file, publicKey: fs.readFileSync(`${file}.pub`, 'utf8').trim() } : generateKey(file, `pacha-test-${host}`);
      authorizeHost(layout, host, k.publicKey);
      keys.set(host, k);
    }
    return k;
  };
  for (const h of opts.hosts ?? []) clientKey(h);

  const [program, ...programArgs] = opts.command ?? [process.execPath, MASTER_BIN];
  const args = [...programArgs, 'serve', '--listen', '127.0.0.1:0', '--hosts-path', layout.hostsPath, '--keys-dir', layout.keysDir, '--host-key', layout.hostKeyFile, ...(opts.args ?? [])];
  const child: ChildProcess = spawn(program, args, { cwd: REPO_DIR, env: { ...process.env, ...opts.env }, stdio: ['ignore', 'pipe', 'pipe'] });
  killOnExit(child);
  let output = '';
  const waiters = new Set<() => void>();
  const onData = (d: Buffer) => {
    output += d.toString();
    for (const w of waiters) w();
  };
  child.stdout!.on('data', onData);
  child.stderr!.on('data', onData);

  const waitForLog = (re: RegExp, timeoutMs = 15_000): Promise<string> =>
    new Promise((resolve, reject) => {
      const check = () => {
        const m = re.exec(output);
        if (m) {
          cleanup();
          resolve(m[0]);
        } else if (child.exitCode !== null || child.signalCode !== null) {
          cleanup();
          reject(new Error(`pacha-master exited (${child.exitCode ?? child.signalCode}) before logging ${re}:\n${output}`));
        }
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(new Error(`pacha-master did not log ${re} within ${timeoutMs} ms:\n${output}`));
      }, timeoutMs);
      const onExit = () => check();
      const cleanup = () => {
        clearTimeout(timer);
        waiters.delete(check);
        child.off('exit', onExit);
      };
      waiters.add(check);
      child.on('exit', onExit);
      check();
    });

  let port: number;
  try {
    const line = await waitForLog(/listening on [^\s:]+:(\d+);/);
    port = Number(/:(\d+);/.exec(line)![1]);
  } catch (e) {
    child.kill('SIGKILL');
    throw e;
  }
  const pub = fs.readFileSync(`${layout.hostKeyFile}.pub`, 'utf8').trim().split(/\s+/).slice(0, 2).join(' ');
  let stopped: Promise<void> | null = null;
  return {
    port,
    hostsPath: layout.hostsPath,
    keysDir: layout.keysDir,
    hostKeyFile: layout.hostKeyFile,
    virtualHostsPath: DEFAULT_VIRTUAL_HOSTS_PATH,
    knownHostsLine: `[127.0.0.1]:${port} ${pub}`,
    keyFor: (host) => clientKey(host).file,
    clientKey,
    hostDir: (host) => path.join(layout.hostsPath, host),
    dir,
    pid: () => child.pid!,
    output: () => output,
    waitForLog,
    stop: () => {
      stopped ??= stopChild(child).then(() => {
        if (!opts.dir) fs.rmSync(dir, { recursive: true, force: true });
      });
      return stopped;
    },
  };
}

/** A master an agent can push to: the embedded one or OpenSSH. */
export interface SftpTarget {
  kind: 'embedded' | 'openssh';
  port: number;
  knownHostsLine: string;
  /** pacha.hosts.path for the agents. */
  agentHostsPath: string;
  /** SSH user a host logs in as. */
  userFor(host: string): string;
  /** Private key file a host logs in with (generated and authorised on first use). */
  keyFor(host: string): string;
  /** The real folder of a host's tree on this machine (to check with native git). */
  hostDir(host: string): string;
}

export function embeddedTarget(m: MasterHandle): SftpTarget {
  return {
    kind: 'embedded',
    port: m.port,
    knownHostsLine: m.knownHostsLine,
    agentHostsPath: m.virtualHostsPath,
    userFor: (host) => host,
    keyFor: m.keyFor,
    hostDir: m.hostDir,
  };
}

export function opensshTarget(s: SshdHandle): SftpTarget {
  const keys = new Map<string, string>();
  return {
    kind: 'openssh',
    port: s.port,
    knownHostsLine: s.knownHostsLine,
    agentHostsPath: s.hostsPath,
    userFor: () => s.user,
    keyFor: (host) => {
      let k = keys.get(host);
      if (!k) {
        k = s.addClientKey(host).file;
        keys.set(host, k);
      }
      return k;
    },
    hostDir: (host) => path.join(s.hostsPath, host),
  };
}

/**
 * Point a test host at a master: copies the host's private key to /etc/pacha/id_ed25519 and the
 * master's known_hosts line to /etc/pacha/known_hosts inside the host's root, and writes
 * /etc/pacha.conf (pacha.host=127.0.0.1, port, user, key, known_hosts, hosts path) plus `extra`.
 * Pass trust=false to leave known_hosts empty (trust-master tests).
 */
export function writeAgentConfig(h: TestHost, t: SftpTarget, extra: Record<string, string | number> = {}, opts: { trust?: boolean } = {}): Record<string, string | number> {
  fs.mkdirSync(h.p('/etc/pacha'), { recursive: true, mode: 0o700 });
  fs.copyFileSync(t.keyFor(h.name), h.p('/etc/pacha/id_ed25519'));
  fs.chmodSync(h.p('/etc/pacha/id_ed25519'), 0o600);
  fs.writeFileSync(h.p('/etc/pacha/known_hosts'), opts.trust === false ? '' : t.knownHostsLine + '\n', { mode: 0o600 });
  const keys: Record<string, string | number> = {
    'pacha.host': '127.0.0.1',
    'pacha.ssh.port': t.port,
    'pacha.ssh.user': t.userFor(h.name),
    'pacha.ssh.key': '/etc/pacha/id_ed25519',
    'pacha.ssh.known_hosts': '/etc/pacha/known_hosts',
    'pacha.hosts.path': t.agentHostsPath,
    ...extra,
  };
  h.writeConfig(keys);
  return keys;
}
