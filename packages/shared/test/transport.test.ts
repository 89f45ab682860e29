import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll } from 'vitest';
import { LocalTransport } from '@pacha/shared/transport/local';
import { SftpTransport } from '@pacha/shared/transport/sftp';
import { silentLogger } from '@pacha/shared/log';
import { startMaster } from '@pacha/test-support/master';
import { startSshd } from '@pacha/test-support/sshd';
import { transportSuite } from './transport-suite.ts';

// The one transport suite against its three targets. OpenSSH is mandatory in CI (the harness
// throws when sshd is missing there) and skipped loudly elsewhere.

const khDir = fs.mkdtempSync(path.join(os.tmpdir(), 'pacha-kh-'));
afterAll(() => fs.rmSync(khDir, { recursive: true, force: true }));
let khCount = 0;

function knownHosts(line: string): string {
  const file = path.join(khDir, `known_hosts${khCount++}`);
  fs.writeFileSync(file, line + '\n');
  return file;
}

transportSuite('local folder', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pacha-local-master-'));
  return {
    transport: new LocalTransport(`file://${dir}`),
    base: `${dir}/suite`,
    cleanup: async () => fs.rmSync(dir, { recursive: true, force: true }),
  };
});

transportSuite('embedded master (pacha-master serve)', async () => {
  const m = await startMaster({ hosts: ['suitehost'] });
  const transport = await SftpTransport.connect({
    host: '127.0.0.1',
    port: m.port,
    user: 'suitehost',
    auth: { privateKey: fs.readFileSync(m.keyFor('suitehost')), source: 'test key' },
    knownHostsFile: knownHosts(m.knownHostsLine),
    log: silentLogger,
  });
  return {
    transport,
    base: `${m.virtualHostsPath}/suitehost/repo/objects/pack`,
    allowlist: { filePrefix: 'tmp_pack_' },
    cleanup: async () => {
      await transport.close();
      await m.stop();
    },
  };
});

transportSuite('OpenSSH sshd', async () => {
  const s = await startSshd({ what: 'the transport suite against OpenSSH' });
  if (s === null) return null;
  const transport = await SftpTransport.connect({
    host: '127.0.0.1',
    port: s.port,
    user: s.user,
    auth: { privateKey: fs.readFileSync(s.clientKeyFile), source: 'test key' },
    knownHostsFile: knownHosts(s.knownHostsLine),
    log: silentLogger,
  });
  return {
    transport,
    base: `${s.hostsPath}/suitehost/repo/suite`,
    cleanup: async () => {
      await transport.close();
      await s.stop();
    },
  };
});
