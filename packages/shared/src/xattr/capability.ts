// File capabilities as Linux stores them in security.capability (struct vfs_ns_cap_data):
// le32 magic_etc (revision in the high byte, bit 0 = effective), then {permitted, inheritable}
// le32 pairs (one pair for revision 1, two for 2 and 3), then for revision 3 the le32 root uid
// of the user namespace. In the snapshot it is text, so a `setcap` reads as a diff:
//   v2;e;p=cap_net_bind_service,cap_net_raw;i=
// (a bit without a name in this table is cap_<number>; revision 3 adds ;rootid=<uid>).

export const CAPABILITY = 'security.capability';

const NAMES = [
  'chown', 'dac_override', 'dac_read_search', 'fowner', 'fsetid', 'kill', 'setgid', 'setuid', 'setpcap',
  'linux_immutable', 'net_bind_service', 'net_broadcast', 'net_admin', 'net_raw', 'ipc_lock', 'ipc_owner',
  'sys_module', 'sys_rawio', 'sys_chroot', 'sys_ptrace', 'sys_pacct', 'sys_admin', 'sys_boot', 'sys_nice',
  'sys_resource', 'sys_time', 'sys_tty_config', 'mknod', 'lease', 'audit_write', 'audit_control', 'setfcap',
  'mac_override', 'mac_admin', 'syslog', 'wake_alarm', 'block_suspend', 'audit_read', 'perfmon', 'bpf',
  'checkpoint_restore',
].map((n) => `cap_${n}`);

export interface FileCaps {
  revision: 1 | 2 | 3;
  effective: boolean;
  /** Bit sets as 64-bit numbers (two le32 halves). */
  permitted: bigint;
  inheritable: bigint;
  rootid?: number;
}

const SIZES = { 1: 12, 2: 20, 3: 24 } as const;

/** null when the value is not a capability set this code writes back byte for byte. */
export function decodeCaps(b: Buffer): FileCaps | null {
  if (b.length < 4) return null;
  const magic = b.readUInt32LE(0);
  const revision = magic >>> 24;
  if ((revision !== 1 && revision !== 2 && revision !== 3) || b.length !== SIZES[revision]) return null;
  if ((magic & 0x00fffffe) !== 0) return null;
  const words = revision === 1 ? 1 : 2;
  let permitted = 0n;
  let inheritable = 0n;
  for (let i = 0; i < words; i++) {
    permitted |= BigInt(b.readUInt32LE(4 + 8 * i)) << BigInt(32 * i);
    inheritable |= BigInt(b.readUInt32LE(8 + 8 * i)) << BigInt(32 * i);
  }
  const caps: FileCaps = { revision, effective: (magic & 1) === 1, permitted, inheritable };
  if (revision === 3) caps.rootid = b.readUInt32LE(20);
  return caps;
}

export function encodeCaps(c: FileCaps): Buffer {
  const b = Buffer.alloc(SIZES[c.revision]);
  b.writeUInt32LE(((c.revision << 24) | (c.effective ? 1 : 0)) >>> 0, 0);
  const words = c.revision === 1 ? 1 : 2;
  for (let i = 0; i < words; i++) {
    b.writeUInt32LE(Number((c.permitted >> BigInt(32 * i)) & 0xffffffffn), 4 + 8 * i);
    b.writeUInt32LE(Number((c.inheritable >> BigInt(32 * i)) & 0xffffffffn), 8 + 8 * i);
  }
  if (c.revision === 3) b.writeUInt32LE(c.rootid ?? 0, 20);
  return b;
}

function setText(bits: bigint): string {
  const out: string[] = [];
  for (let i = 0; i < 64; i++) if ((bits >> BigInt(i)) & 1n) out.push(NAMES[i] ?? `cap_${i}`);
  return out.join(',');
}

function parseSet(text: string): bigint {
  let bits = 0n;
  if (text === '') return bits;
  for (const name of text.split(',')) {
    let i = NAMES.indexOf(name);
    const m = /^cap_(\d+)$/.exec(name);
    if (i < 0 && m && Number(m[1]) < 64) i = Number(m[1]);
    if (i < 0) throw new Error(`unknown capability "${name}" (expected a name like cap_net_raw or cap_<bit number>)`);
    bits |= 1n << BigInt(i);
  }
  return bits;
}

export function capsText(c: FileCaps): string {
  const parts = [`v${c.revision}`];
  if (c.effective) parts.push('e');
  parts.push(`p=${setText(c.permitted)}`, `i=${setText(c.inheritable)}`);
  if (c.revision === 3) parts.push(`rootid=${c.rootid ?? 0}`);
  return parts.join(';');
}

export function parseCapsText(text: string): FileCaps {
  const bad = (why: string) => new Error(`bad capability set "${text}" (${why}; expected like v2;e;p=cap_net_raw;i=)`);
  const parts = text.split(';');
  const rev = /^v([123])$/.exec(parts[0] ?? '');
  if (!rev) throw bad('no revision v1, v2 or v3 first');
  const c: FileCaps = { revision: Number(rev[1]) as 1 | 2 | 3, effective: false, permitted: 0n, inheritable: 0n };
  for (const p of parts.slice(1)) {
    if (p === 'e') c.effective = true;
    else if (p.startsWith('p=')) c.permitted = parseSet(p.slice(2));
    else if (p.startsWith('i=')) c.inheritable = parseSet(p.slice(2));
    else if (p.startsWith('rootid=') && c.revision === 3 && /^\d+$/.test(p.slice(7))) c.rootid = Number(p.slice(7));
    else throw bad(`unexpected "${p}"`);
  }
  if (c.revision === 3 && c.rootid === undefined) c.rootid = 0;
  const limit = c.revision === 1 ? 1n << 32n : 1n << 64n;
  if (c.permitted >= limit || c.inheritable >= limit) throw bad('a capability beyond what this revision holds');
  return c;
}
