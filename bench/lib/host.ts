import fs from 'node:fs';
import path from 'node:path';

// A benchmark host under its own root dir, pointed at the benchmark's OpenSSH sshd: its key,
// the sshd's host key in known_hosts, the machine's passwd and group, and /data watched.

export interface BenchSshd {
  port: number;
  user: string;
  knownHostsLine: string;
  clientKeyFile: string;
  hostsPath: string;
}

/** Write the host's files; returns the environment that runs pacha as that host. */
export function writeBenchHost(root: string, sshd: BenchSshd, hostname: string): NodeJS.ProcessEnv {
  fs.mkdirSync(path.join(root, 'etc/pacha'), { recursive: true, mode: 0o700 });
  fs.copyFileSync(sshd.clientKeyFile, path.join(root, 'etc/pacha/id_ed25519'));
  fs.chmodSync(path.join(root, 'etc/pacha/id_ed25519'), 0o600);
  fs.writeFileSync(path.join(root, 'etc/pacha/known_hosts'), sshd.knownHostsLine + '\n');
  fs.copyFileSync('/etc/passwd', path.join(root, 'etc/passwd'));
  fs.copyFileSync('/etc/group', path.join(root, 'etc/group'));
  fs.writeFileSync(
    path.join(root, 'etc/pacha.conf'),
    [
      '[DEFAULT]',
      `pacha.hostname = ${hostname}`,
      'pacha.host = 127.0.0.1',
      `pacha.ssh.port = ${sshd.port}`,
      `pacha.ssh.user = ${sshd.user}`,
      'pacha.ssh.key = /etc/pacha/id_ed25519',
      'pacha.ssh.known_hosts = /etc/pacha/known_hosts',
      `pacha.hosts.path = ${sshd.hostsPath}`,
      'pacha.watch = /data',
      '',
    ].join('\n'),
  );
  return { PACHA_ROOT_DIR: root, PACHA_CONFIG: '' };
}
