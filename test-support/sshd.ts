import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

// A real OpenSSH sshd on a free loopback port, with its own host key, config and
// authorized_keys in a temporary folder: the "OpenSSH master" of the transport tests.
// It logs in as the user running the tests (root here and in CI) and serves SFTP with
// internal-sftp, so remote paths are ordinary absolute paths on this machine.
//
// When sshd is not installed: startSshd() throws if CI=true (the OpenSSH runs are mandatory
// there) and otherwise returns null after a loud message, so the caller can skip.

export const SSHD_BIN = process.env.PACHA_TEST_SSHD ?? '/usr/sbin/sshd';

export interface ClientKey {
  /** Private key file (ed25519, no passphrase). */
  file: string;
  /** The public key line ("ssh-ed25519 AAAA... comment"). */
  publicKey: string;
}

export interface SshdHandle {
  port: number;
  /** The user to log in as (the user running the tests). */
  user: string;
  /** "[127.0.0.1]:PORT ssh-ed25519 AAAA..." — a known_hosts line for this server. */
  knownHostsLine: string;
  /** The server's public host key ("ssh-ed25519 AAAA..."). */
  hostPublicKey: string;
  /** A client key already authorised. */
  clientKeyFile: string;
  /** A temporary folder the tests may use as pacha.hosts.path (absolute path on this machine). */
  hostsPath: string;
  /** The server's temporary folder (config, keys, log). */
  dir: string;
  /** Generate and authorise one more client key (for fleet tests with separate keys). */
  addClientKey(name?: string): ClientKey;
  /** sshd's pid (e.g. to SIGSTOP it in a hang test). */
  pid(): number;
  /** What sshd wrote on stderr so far. */
  output(): string;
  stop(): Promise<void>;
}

export function sshdAvailable(): boolean {
  return fs.existsSync(SSHD_BIN) && hasKeygen();
}

function hasKeygen(): boolean {
  try {
    execFileSync('ssh-keygen', ['-?'], { stdio: 'ignore' });
    return true;
  } catch (e) {
    // ssh-keygen -? exits non-zero but runs; ENOENT means it is missing.
    return (e as NodeJS.ErrnoException).code !== 'ENOENT';
  }
}

/** Generate an ed25519 key pair without passphrase. */
export function generateKey(file: string, comment = 'pacha-test'): ClientKey {
  fs.rmSync(file, { force: true });
  fs.rmSync(`${file}.pub`, { force: true });
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', comment, '-f', file], { stdio: 'ignore' });
  return { file, publicKey: fs.readFileSync(`${file}.pub`, 'utf8').trim() };
}

/** A TCP port nobody listens on right now (there is a small race; callers retry on bind failure). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as net.AddressInfo).port;
      srv.close(() => resolve(port));
    });
  });
}

function skipMessage(what: string): string {
  const bar = '!'.repeat(78);
  return `\n${bar}\n!! SKIPPING ${what}: OpenSSH sshd not found at ${SSHD_BIN} (apt-get install openssh-server).\n!! These runs are mandatory in CI (CI=true).\n${bar}\n`;
}

/**
 * Start sshd. Returns null (after a loud message) when sshd is missing outside CI.
 * `what` names the tests that would be skipped, for the message.
 */
export async function startSshd(opts: { what?: string; tmpDir?: string; /** appended to sshd_config (e.g. a Match block) */ extraConfig?: string[] } = {}): Promise<SshdHandle | null> {
  if (!sshdAvailable()) {
    if (process.env.CI === 'true') throw new Error(`OpenSSH sshd is required in CI but ${SSHD_BIN} (or ssh-keygen) is missing`);
    console.warn(skipMessage(opts.what ?? 'the OpenSSH tests'));
    return null;
  }
  // Privilege separation needs this directory even when running as root.
  fs.mkdirSync('/run/sshd', { recursive: true, mode: 0o755 });

  const dir = fs.mkdtempSync(path.join(opts.tmpDir ?? os.tmpdir(), 'pacha-sshd-'));
  fs.chmodSync(dir, 0o755);
  const hostKey = path.join(dir, 'ssh_host_ed25519_key');
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'pacha-test-sshd', '-f', hostKey], { stdio: 'ignore' });
  const hostPublicKey = fs.readFileSync(`${hostKey}.pub`, 'utf8').trim().split(/\s+/).slice(0, 2).join(' ');
  const authorizedKeys = path.join(dir, 'authorized_keys');
  fs.writeFileSync(authorizedKeys, '', { mode: 0o600 });
  const hostsPath = path.join(dir, 'hosts');
  fs.mkdirSync(hostsPath);
  const user = os.userInfo().username;

  let keyCount = 0;
  const addClientKey = (name?: string): ClientKey => {
    const k = generateKey(path.join(dir, `client_${name ?? `key${keyCount}`}`), `pacha-test-${name ?? keyCount}`);
    keyCount++;
    fs.appendFileSync(authorizedKeys, k.publicKey + '\n');
    return k;
  };
  const client = addClientKey('default');

  let lastError = '';
  for (let attempt = 0; attempt < 5; attempt++) {
    const port = await freePort();
    const configFile = path.join(dir, 'sshd_config');
    fs.writeFileSync(
      configFile,
      [
        `ListenAddress 127.0.0.1:${port}`,
        `HostKey ${hostKey}`,
        'PidFile none',
        'UsePAM no',
        'PermitRootLogin prohibit-password',
        'PubkeyAuthentication yes',
        'PasswordAuthentication no',
        'KbdInteractiveAuthentication no',
        `AuthorizedKeysFile ${authorizedKeys}`,
        'StrictModes no',
        'Subsystem sftp internal-sftp',
        // Fleet tests open 50+ connections at once: no early drops.
        'MaxStartups 500',
        'MaxSessions 50',
        'LoginGraceTime 30',
        'LogLevel ERROR',
        'PrintMotd no',
        'X11Forwarding no',
        'AllowTcpForwarding no',
        'AcceptEnv none',
        ...(opts.extraConfig ?? []),
      ].join('\n') + '\n',
    );
    const child = spawn(SSHD_BIN, ['-D', '-e', '-f', configFile], { stdio: ['ignore', 'ignore', 'pipe'] });
    killOnExit(child);
    let output = '';
    child.stderr!.on('data', (d) => (output += d));
    const ready = await waitForPort(port, child, 10_000);
    if (!ready) {
      lastError = output;
      child.kill('SIGKILL');
      continue;
    }
    let stopped: Promise<void> | null = null;
    return {
      port,
      user,
      knownHostsLine: `[127.0.0.1]:${port} ${hostPublicKey}`,
      hostPublicKey,
      clientKeyFile: client.file,
      hostsPath,
      dir,
      addClientKey,
      pid: () => child.pid!,
      output: () => output,
      stop: () => {
        stopped ??= stopChild(child).then(() => fs.rmSync(dir, { recursive: true, force: true }));
        return stopped;
      },
    };
  }
  fs.rmSync(dir, { recursive: true, force: true });
  throw new Error(`sshd did not start: ${lastError.trim() || 'no output'}`);
}

/** Poll until something accepts on the port, or the child exits, or time runs out. */
export async function waitForPort(port: number, child: ChildProcess, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null) return false;
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect({ port, host: '127.0.0.1' });
      s.once('connect', () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
    });
    if (ok) return true;
    await new Promise((r) => setTimeout(r, 50));
  }
  return false;
}

// Servers still running when the test process exits (a test that timed out before its
// afterAll) are killed, so they never outlive the run.
const running = new Set<ChildProcess>();
let exitHookInstalled = false;
export function killOnExit(child: ChildProcess): void {
  running.add(child);
  child.once('exit', () => running.delete(child));
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.once('exit', () => {
      for (const c of running) {
        try {
          c.kill('SIGCONT');
          c.kill('SIGKILL');
        } catch {
          // gone
        }
      }
    });
  }
}

/** SIGTERM (after SIGCONT, in case a test stopped it), SIGKILL after 3 s. */
export function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), 3000);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
    child.kill('SIGCONT');
    child.kill('SIGTERM');
  });
}
