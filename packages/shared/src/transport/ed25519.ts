import ssh2 from 'ssh2';

/**
 * A new ed25519 key pair in OpenSSH format. ssh2's generator drops a leading zero byte of the
 * public key (about one key in 256), and the private file it writes then does not parse; such a
 * pair is thrown away and another made, so a key pacha writes always loads again.
 */
export function generateEd25519(comment?: string): { private: string; public: string } {
  for (let i = 0; i < 16; i++) {
    const pair = ssh2.utils.generateKeyPairSync('ed25519', comment === undefined ? undefined : { comment });
    if (!(ssh2.utils.parseKey(pair.private) instanceof Error)) return pair;
  }
  throw new Error('could not generate an ed25519 key that parses');
}
