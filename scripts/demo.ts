// `npm run demo`: the whole story on one machine, in a temporary folder, in well under 30 s.
// An embedded master on loopback, a fake host "web1" under its own PACHA_ROOT_DIR, the agent
// running until its first push, then the host is "lost" and rebuilt into a fresh root with
// the example hooks, and the rebuilt tree is compared with the original, path by path.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { generateEd25519 } from '@pacha/shared/transport/ed25519';
import { compareTrees } from './tree-compare.ts';

const repo = path.resolve(import.meta.dirname, '..');
const PACHA = path.join(repo, 'packages/agent/bin/pacha.js');
const MASTER = path.join(repo, 'packages/master/bin/pacha-master.js');
const HOST = 'web1';
const started = Date.now();
const keep = process.env.PACHA_DEMO_KEEP === '1';
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'pacha-demo-'));
const children: ChildProcess[] = [];
let stepNo = 0;
const STEPS = 8;

function step(text: string): void {
  stepNo++;
  process.stdout.write(`\n\x1b[1m[${stepNo}/${STEPS}] ${text}\x1b[0m\n`);
}

function indent(text: string): string {
  return text
    .trimEnd()
    .split('\n')
    .filter((l) => l.length > 0)
    .map((l) => `    ${l}`)
    .join('\n');
}

interface Run {
  code: number;
  out: string;
}

/** Run one of our CLIs; its output is shown indented, and a failure ends the demo. */
function run(bin: string, args: string[], env: NodeJS.ProcessEnv, opts: { show?: boolean; allowFail?: boolean } = {}): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [bin, ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (out += d));
    child.on('error', reject);
    child.on('close', (code) => {
      if (opts.show !== false && out.trim()) process.stdout.write(indent(out) + '\n');
      if (code !== 0 && !opts.allowFail) reject(new Error(`${path.basename(bin)} ${args.join(' ')} exited ${code}`));
      else resolve({ code: code ?? 1, out });
    });
  });
}

// Files belong to root, as on a real host (or to whoever runs the demo without root).
const ME = { uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0 };

function write(root: string, hostAbs: string, content: string, mode = 0o644, uid = ME.uid, gid = ME.gid): void {
  const p = path.join(root, hostAbs);
  fs.mkdirSync(path.dirname(p), { recursive: true });
  fs.writeFileSync(p, content);
  fs.chmodSync(p, mode);
  fs.chownSync(p, uid, gid);
}

/** cap_net_raw+ep on a file; false where that is not possible (not root, no setcap, no support). */
function setCapability(file: string): boolean {
  if (process.getuid?.() !== 0) return false;
  try {
    execFileSync('setcap', ['cap_net_raw+ep', file], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** getcap's line for a file, with the demo's temporary folder left out. */
function getcap(file: string): string {
  return execFileSync('getcap', [file], { encoding: 'utf8' }).trim().replace(tmp, '') || '(none)';
}

function waitFor(check: () => boolean, what: string, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  return new Promise((resolve, reject) => {
    const tick = () => {
      if (check()) return resolve();
      if (Date.now() > deadline) return reject(new Error(`timed out waiting for ${what}`));
      setTimeout(tick, 100);
    };
    tick();
  });
}

function cleanup(): void {
  for (const c of children) if (c.exitCode === null) c.kill('SIGTERM');
  if (!keep) fs.rmSync(tmp, { recursive: true, force: true });
}

async function main(): Promise<void> {
  const isRoot = process.getuid?.() === 0;
  // Without root the service user is ourselves: pacha can only give files to users it may chown to.
  const appUid = isRoot ? 990 : process.getuid!();
  const appGid = isRoot ? 990 : process.getgid!();

  step('Start the embedded master (pacha-master serve) on loopback, in a temporary folder');
  const masterDir = path.join(tmp, 'master');
  const hostsPath = path.join(masterDir, 'hosts');
  fs.mkdirSync(hostsPath, { recursive: true });
  const server = spawn(process.execPath, [MASTER, 'serve', '--listen', '127.0.0.1:0', '--hosts-path', hostsPath], { stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(server);
  let serverLog = '';
  server.stderr.on('data', (d) => (serverLog += d));
  server.stdout.on('data', (d) => (serverLog += d));
  await waitFor(() => /listening on [^:]+:\d+/.test(serverLog), 'the master to listen');
  const port = Number(/listening on [^:]+:(\d+)/.exec(serverLog)![1]);
  process.stdout.write(indent(serverLog.split('\n').filter((l) => /listening|host key/.test(l)).join('\n')) + '\n');

  step(`Set up host "${HOST}": nginx config, a setuid helper, a service user's files, a symlink`);
  const hostRoot = path.join(tmp, 'web1');
  const etcPasswd = `root:x:0:0:root:/root:/bin/sh\napp:x:${appUid}:${appGid}:app service:/srv/app:/usr/sbin/nologin\n`;
  const etcGroup = `root:x:0:\napp:x:${appGid}:\n`;
  write(hostRoot, '/etc/passwd', etcPasswd);
  write(hostRoot, '/etc/group', etcGroup);
  write(hostRoot, '/etc/nginx/nginx.conf', 'user www-data;\nworker_processes auto;\ninclude /etc/nginx/sites-enabled/*;\n');
  write(hostRoot, '/etc/nginx/sites-available/default', 'server {\n  listen 80 default_server;\n  root /srv/app/public;\n}\n');
  fs.mkdirSync(path.join(hostRoot, 'etc/nginx/sites-enabled'), { recursive: true });
  fs.symlinkSync('../sites-available/default', path.join(hostRoot, 'etc/nginx/sites-enabled/default'));
  fs.mkdirSync(path.join(hostRoot, 'etc/nginx/conf.d'), { recursive: true }); // empty on purpose
  write(hostRoot, '/usr/local/bin/backup-helper', '#!/bin/sh\necho helper\n', 0o4755);
  // A file capability (extended attribute security.capability), where root and setcap allow it.
  write(hostRoot, '/usr/local/bin/ping-helper', '#!/bin/sh\necho ping\n', 0o755);
  const caps = setCapability(path.join(hostRoot, 'usr/local/bin/ping-helper'));
  process.stdout.write(indent(caps ? `getcap before: ${getcap(path.join(hostRoot, 'usr/local/bin/ping-helper'))}` : 'file capabilities: not shown here (they need root and setcap)') + '\n');
  write(hostRoot, '/srv/app/public/index.html', '<h1>web1</h1>\n', 0o644, appUid, appGid);
  write(hostRoot, '/srv/app/config/secret.key', 'k3y-material\n', 0o600, appUid, appGid);
  fs.chownSync(path.join(hostRoot, 'srv/app'), appUid, appGid);
  fs.mkdirSync(path.join(hostRoot, 'srv/app/tmp'));
  fs.chmodSync(path.join(hostRoot, 'srv/app/tmp'), 0o1777);

  // The host's SSH key, authorised on the master; the agent's config points at the master.
  const keyDir = path.join(hostRoot, 'etc/pacha');
  fs.mkdirSync(keyDir, { recursive: true, mode: 0o700 });
  const pair = generateEd25519(`pacha@${HOST}`);
  fs.writeFileSync(path.join(keyDir, 'id_ed25519'), pair.private, { mode: 0o600 });
  fs.writeFileSync(path.join(keyDir, 'id_ed25519.pub'), pair.public + '\n');
  const config = [
    '[DEFAULT]',
    'pacha.host = 127.0.0.1',
    `pacha.ssh.port = ${port}`,
    `pacha.ssh.user = ${HOST}`,
    'pacha.ssh.key = /etc/pacha/id_ed25519',
    'pacha.ssh.known_hosts = /etc/pacha/known_hosts',
    `pacha.hostname = ${HOST}`,
    'pacha.frequency = 0',
    '',
  ].join('\n');
  fs.writeFileSync(path.join(hostRoot, 'etc/pacha.conf'), config);
  const env1 = { PACHA_ROOT_DIR: hostRoot, PACHA_CONFIG: '' };
  await run(MASTER, ['authorize', HOST, path.join(keyDir, 'id_ed25519.pub'), '--hosts-path', hostsPath], {});
  await run(PACHA, ['trust-master', '--yes'], env1);
  await run(PACHA, ['watch', '/etc/nginx', '/usr/local/bin/backup-helper', '/usr/local/bin/ping-helper', '/srv/app'], env1);

  step('Run the agent (pacha daemon) until its first snapshot is on the master');
  const daemon = spawn(process.execPath, [PACHA, 'daemon'], { env: { ...process.env, ...env1 }, stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(daemon);
  let daemonLog = '';
  daemon.stderr.on('data', (d) => (daemonLog += d));
  daemon.stdout.on('data', (d) => (daemonLog += d));
  const masterRef = path.join(hostsPath, HOST, 'repo/refs/heads/main');
  await waitFor(() => fs.existsSync(masterRef), 'the first push');
  daemon.kill('SIGTERM');
  await new Promise((r) => daemon.once('close', r));
  process.stdout.write(indent(daemonLog) + '\n');
  await run(PACHA, ['status'], env1);

  step('Add a rebuild hook on the master: notify at the end (users and packages pacha restores itself)');
  const pre = path.join(hostsPath, HOST, 'pacha_pre');
  const post = path.join(hostsPath, HOST, 'pacha_post');
  fs.mkdirSync(pre, { recursive: true });
  fs.mkdirSync(post, { recursive: true });
  fs.copyFileSync(path.join(repo, 'hooks-examples/pacha_post/90-notify'), path.join(post, '90-notify'));
  process.stdout.write(indent(`${post}/90-notify`) + '\n');

  step(`Lose the host: a fresh machine with only pacha, its config and its key`);
  const newRoot = path.join(tmp, 'web1-rebuilt');
  write(newRoot, '/etc/passwd', 'root:x:0:0:root:/root:/bin/sh\n');
  write(newRoot, '/etc/group', 'root:x:0:\n');
  fs.mkdirSync(path.join(newRoot, 'etc/pacha'), { recursive: true, mode: 0o700 });
  for (const f of ['id_ed25519', 'known_hosts']) fs.copyFileSync(path.join(keyDir, f), path.join(newRoot, 'etc/pacha', f));
  fs.writeFileSync(path.join(newRoot, 'etc/pacha.conf'), config);
  process.stdout.write(indent(`new root ${newRoot}: /etc/pacha.conf, /etc/pacha/id_ed25519, /etc/pacha/known_hosts (no "app" user yet)`) + '\n');

  step(`Rebuild it: pacha --rebuild ${HOST} --yes`);
  // The snapshot records the "app" user and group (.pacha/accounts): the rebuild creates them
  // (as root; otherwise it says so and the files keep the recorded ids).
  const env2 = { PACHA_ROOT_DIR: newRoot, PACHA_CONFIG: '' };
  await run(PACHA, ['--rebuild', HOST, '--yes', '--verify'], env2);

  step('Compare the rebuilt tree with the original: contents, types, modes, owners, link targets, extended attributes');
  const roots = ['/etc/nginx', '/usr/local/bin/backup-helper', '/usr/local/bin/ping-helper', '/srv/app'];
  const diff = compareTrees(hostRoot, newRoot, roots);
  if (diff.differences.length > 0) {
    process.stdout.write(indent(diff.differences.join('\n')) + '\n');
    throw new Error(`${diff.differences.length} difference(s) between the original and the rebuilt host`);
  }
  process.stdout.write(indent(`identical: ${diff.compared} paths under ${roots.join(', ')}`) + '\n');
  if (caps) process.stdout.write(indent(`getcap after:  ${getcap(path.join(newRoot, 'usr/local/bin/ping-helper'))}`) + '\n');

  step('Clean up');
  cleanup();
  process.stdout.write(indent(`${keep ? `kept ${tmp}` : `removed ${tmp}`}; demo took ${((Date.now() - started) / 1000).toFixed(1)} s`) + '\n');
}

try {
  await main();
} catch (e) {
  process.stderr.write(`\ndemo failed: ${(e as Error).message}\n(kept ${tmp} for a look)\n`);
  for (const c of children) if (c.exitCode === null) c.kill('SIGTERM');
  process.exitCode = 1;
}
