import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import ssh2 from 'ssh2';
import { describe, expect, it } from 'vitest';
import { generateEd25519 } from '@pacha/shared/transport/ed25519';
import { loadOrCreateHostKey } from '@pacha/master/host-key';

describe('ed25519 keys pacha generates', () => {
  it('always parse again (ssh2 alone makes about one unreadable key in 256)', () => {
    // 2,000 keys: ssh2's generator alone fails this about 8 times on average.
    for (let i = 0; i < 2000; i++) expect(ssh2.utils.parseKey(generateEd25519('t').private)).not.toBeInstanceOf(Error);
  });

  it('a master host key created on first start loads again', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pacha-host-key-'));
    try {
      const file = path.join(dir, 'keys/ssh_host_ed25519_key');
      const first = loadOrCreateHostKey(file);
      expect(first.created).toBe(true);
      expect((fs.statSync(file).mode & 0o777).toString(8)).toBe('600');
      expect(loadOrCreateHostKey(file).fingerprint).toBe(first.fingerprint);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
