// Plain JavaScript, loaded by the bins (packages/*/bin/*.js) before any TypeScript: it must run
// on any Node.js old enough to be a system's default. pacha's sources need Node 24 (type
// stripping); on an older Node the bin re-runs itself under the project's own Node 24, which
// `npm ci` installs (the `node` dev dependency), or says in one line what it needs.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const NEED = 24;

/**
 * True when the caller may go on (this Node is new enough). Otherwise it has taken over: the
 * bin runs again under node_modules/node (its exit code becomes this process's), or the
 * process exits 1 after one line naming the Node it needs and how to get it.
 */
export function nodeIsNewEnough(binUrl) {
  const major = Number(process.versions.node.split('.')[0]);
  if (major >= NEED) return true;
  const bin = fileURLToPath(binUrl);
  const name = path.basename(bin, '.js');
  const own = path.resolve(path.dirname(bin), '../../../node_modules/node/bin/node');
  let ownIsOther = false;
  try {
    ownIsOther = fs.realpathSync(own) !== fs.realpathSync(process.execPath);
  } catch {
    // No node_modules/node: the message below.
  }
  if (!ownIsOther) {
    process.stderr.write(
      `${name}: needs Node.js ${NEED} or newer, this is ${process.version}: run \`npm ci\` in the pacha repository ` +
        `(it fetches the project's own Node ${NEED}), or install the pacha .deb, which carries its own (docs/install.md)\n`,
    );
    process.exit(1);
  }
  // node:child_process is loaded only here: a Node new enough does not pay for it at start-up.
  void import('node:child_process').then(({ spawn }) => rerun(spawn, own, bin, name));
  return false;
}

function rerun(spawn, own, bin, name) {
  const child = spawn(own, [bin, ...process.argv.slice(2)], { stdio: 'inherit' });
  // The child is in our process group: a terminal's Ctrl-C reaches it directly. A signal sent to
  // this pid alone (kill, systemd's stop) is passed on.
  for (const sig of ['SIGTERM', 'SIGHUP', 'SIGINT']) process.on(sig, () => child.kill(sig));
  child.on('error', (e) => {
    process.stderr.write(`${name}: cannot run ${own}: ${e.message}\n`);
    process.exit(1);
  });
  child.on('exit', (code, signal) => {
    if (signal) {
      process.removeAllListeners(signal);
      process.kill(process.pid, signal);
    }
    else process.exit(code ?? 1);
  });
}
