import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { appendKnownHost, checkHostKey, fingerprintSha256, keyTypeOfBlob, knownHostsLine, knownHostsName } from '@pacha/shared/transport/known-hosts';
import { generateKey } from '@pacha/test-support/sshd';

// known_hosts is read as ssh(1) reads it; entries written or hashed by OpenSSH's own tools
// are the reference.

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pacha-kh-test-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

function blobOf(pubLine: string): Buffer {
  return Buffer.from(pubLine.split(/\s+/)[1], 'base64');
}
const key = generateKey(path.join(dir, 'k1'));
const other = generateKey(path.join(dir, 'k2'));
const blob = blobOf(key.publicKey);
const typeAndKey = key.publicKey.split(/\s+/).slice(0, 2).join(' ');
const otherTypeAndKey = other.publicKey.split(/\s+/).slice(0, 2).join(' ');

describe('known_hosts', () => {
  it('fingerprints like ssh-keygen -l -E sha256', () => {
    const ref = execFileSync('ssh-keygen', ['-l', '-E', 'sha256', '-f', `${key.file}.pub`], { encoding: 'utf8' }).split(/\s+/)[1];
    expect(fingerprintSha256(blob)).toBe(ref);
    expect(keyTypeOfBlob(blob)).toBe('ssh-ed25519');
  });

  it('names port 22 plainly and other ports as [host]:port', () => {
    expect(knownHostsName('m.example.com', 22)).toBe('m.example.com');
    expect(knownHostsName('10.0.0.1', 2222)).toBe('[10.0.0.1]:2222');
    expect(knownHostsLine('10.0.0.1', 2222, blob)).toBe(`[10.0.0.1]:2222 ${typeAndKey}`);
  });

  it('matches plain names, lists, ports, wildcards and negations', () => {
    const text = [
      '# comment',
      `a.example.com,m.example.com,10.0.0.9 ${typeAndKey}`,
      `[m.example.com]:2222 ${otherTypeAndKey}`,
      `*.wild.example.com,!bad.wild.example.com ${typeAndKey}`,
    ].join('\n');
    expect(checkHostKey(text, 'm.example.com', 22, blob)).toEqual({ status: 'match', lines: [2] });
    expect(checkHostKey(text, '10.0.0.9', 22, blob).status).toBe('match');
    expect(checkHostKey(text, 'M.EXAMPLE.COM', 22, blob).status).toBe('match');
    // Same host on another port is another entry: there it is a different key.
    expect(checkHostKey(text, 'm.example.com', 2222, blob)).toEqual({ status: 'changed', lines: [3] });
    expect(checkHostKey(text, 'm.example.com', 2222, blobOf(other.publicKey)).status).toBe('match');
    expect(checkHostKey(text, 'x.wild.example.com', 22, blob).status).toBe('match');
    expect(checkHostKey(text, 'bad.wild.example.com', 22, blob).status).toBe('unknown');
    expect(checkHostKey(text, 'nobody.example.com', 22, blob).status).toBe('unknown');
    expect(checkHostKey('', 'nobody.example.com', 22, blob).status).toBe('unknown');
  });

  it('matches entries hashed by ssh-keygen -H, on port 22 and other ports', () => {
    const file = path.join(dir, 'hashed');
    fs.writeFileSync(file, `m.example.com ${typeAndKey}\n[10.1.1.1]:2200 ${typeAndKey}\n`);
    execFileSync('ssh-keygen', ['-H', '-f', file], { stdio: 'ignore' });
    const text = fs.readFileSync(file, 'utf8');
    expect(text).toMatch(/^\|1\|/);
    expect(text).not.toContain('m.example.com');
    expect(checkHostKey(text, 'm.example.com', 22, blob).status).toBe('match');
    expect(checkHostKey(text, '10.1.1.1', 2200, blob).status).toBe('match');
    expect(checkHostKey(text, '10.1.1.1', 22, blob).status).toBe('unknown');
    expect(checkHostKey(text, 'm.example.com', 22, blobOf(other.publicKey)).status).toBe('changed');
  });

  it('refuses a key marked @revoked, and ignores @cert-authority lines', () => {
    const text = [`m.example.com ${typeAndKey}`, `@revoked * ${typeAndKey}`, `@cert-authority *.example.com ${otherTypeAndKey}`].join('\n');
    expect(checkHostKey(text, 'm.example.com', 22, blob)).toEqual({ status: 'revoked', lines: [2] });
    expect(checkHostKey(text, 'x.example.com', 22, blobOf(other.publicKey)).status).toBe('unknown');
  });

  it('appends to a missing file (0600) and after a last line without newline', () => {
    const file = path.join(dir, 'sub', 'known_hosts');
    appendKnownHost(file, `a ${typeAndKey}`);
    expect(fs.statSync(file).mode & 0o777).toBe(0o600);
    fs.appendFileSync(file, `b ${typeAndKey}`);
    appendKnownHost(file, `c ${typeAndKey}`);
    expect(fs.readFileSync(file, 'utf8').split('\n')).toEqual([`a ${typeAndKey}`, `b ${typeAndKey}`, `c ${typeAndKey}`, '']);
    // ssh-keygen reads what we wrote.
    const found = execFileSync('ssh-keygen', ['-F', 'c', '-f', file], { encoding: 'utf8' });
    expect(found).toContain(typeAndKey);
  });
});
