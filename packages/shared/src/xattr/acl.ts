// POSIX ACLs as Linux stores them in system.posix_acl_access and system.posix_acl_default:
// a little-endian u32 version (2), then 8-byte entries {u16 tag, u16 perm, u32 id}, id only
// meaningful for named users and groups (ACL_UNDEFINED_ID otherwise). The kernel keeps the
// entries sorted by tag, then id, and refuses any other order.
//
// In the snapshot an ACL is text that names users and groups by name and id, like owners:
//   u::rw-,u:alice:1001:r--,g::r-x,g:deploy:1002:rwx,m::rwx,o::r-x
// (`u:name:id:perms` is a named user, `u::perms` the owner; a name unknown on the snapshotted
// host is empty: `u::1001:r--`). On restore the ids are taken from the names on the rebuilt host.

export const ACL_ACCESS = 'system.posix_acl_access';
export const ACL_DEFAULT = 'system.posix_acl_default';
const VERSION = 2;
const UNDEFINED_ID = 0xffffffff;

type Tag = 'u' | 'g' | 'm' | 'o';
export interface AclEntry {
  tag: Tag;
  /** Named user or group (u/g with a qualifier); false for the owner, owning group, mask, other. */
  named: boolean;
  /** Name on the snapshotted host ('' when the id had none); only for named entries. */
  name: string;
  /** Numeric id as recorded; only for named entries. */
  id: number;
  /** rwx bits (0-7). */
  perm: number;
}

const TAG_BITS: Record<number, { tag: Tag; named: boolean }> = {
  0x01: { tag: 'u', named: false },
  0x02: { tag: 'u', named: true },
  0x04: { tag: 'g', named: false },
  0x08: { tag: 'g', named: true },
  0x10: { tag: 'm', named: false },
  0x20: { tag: 'o', named: false },
};

function tagBits(e: AclEntry): number {
  if (e.tag === 'u') return e.named ? 0x02 : 0x01;
  if (e.tag === 'g') return e.named ? 0x08 : 0x04;
  return e.tag === 'm' ? 0x10 : 0x20;
}

/** Decode a stored ACL; null when it is not one this code can write back exactly. */
export function decodeAcl(bytes: Buffer, names: { user(id: number): string; group(id: number): string }): AclEntry[] | null {
  if (bytes.length < 4 || (bytes.length - 4) % 8 !== 0 || bytes.readUInt32LE(0) !== VERSION) return null;
  const out: AclEntry[] = [];
  for (let off = 4; off < bytes.length; off += 8) {
    const t = TAG_BITS[bytes.readUInt16LE(off)];
    const perm = bytes.readUInt16LE(off + 2);
    const id = bytes.readUInt32LE(off + 4);
    if (!t || perm > 7) return null;
    if (t.named) out.push({ ...t, name: t.tag === 'u' ? names.user(id) : names.group(id), id, perm });
    else {
      if (id !== UNDEFINED_ID) return null;
      out.push({ ...t, name: '', id: 0, perm });
    }
  }
  return out;
}

/** Encode entries with the ids given (already mapped to the target host), in the kernel's order. */
export function encodeAcl(entries: AclEntry[]): Buffer {
  const sorted = [...entries].sort((a, b) => tagBits(a) - tagBits(b) || (a.named ? a.id - b.id : 0));
  const buf = Buffer.alloc(4 + 8 * sorted.length);
  buf.writeUInt32LE(VERSION, 0);
  sorted.forEach((e, i) => {
    const off = 4 + 8 * i;
    buf.writeUInt16LE(tagBits(e), off);
    buf.writeUInt16LE(e.perm, off + 2);
    buf.writeUInt32LE(e.named ? e.id : UNDEFINED_ID, off + 4);
  });
  return buf;
}

const PERM = /^[r-][w-][x-]$/;

function permText(p: number): string {
  return (p & 4 ? 'r' : '-') + (p & 2 ? 'w' : '-') + (p & 1 ? 'x' : '-');
}

// Names in the text: the characters that separate fields, and anything unprintable, as \xHH.
function escName(s: string): string {
  return s.replace(/[\\,: \x00-\x1f\x7f"=]/g, (c) => '\\x' + c.charCodeAt(0).toString(16).padStart(2, '0'));
}
function unescName(s: string): string {
  return s.replace(/\\x([0-9a-f]{2})/gi, (_m, h: string) => String.fromCharCode(parseInt(h, 16)));
}

export function aclText(entries: AclEntry[]): string {
  return entries
    .map((e) => (e.named ? `${e.tag}:${escName(e.name)}:${e.id}:${permText(e.perm)}` : `${e.tag}::${permText(e.perm)}`))
    .join(',');
}

/** Parse aclText(); throws a message naming the bad entry. */
export function parseAclText(text: string): AclEntry[] {
  if (text === '') return [];
  return text.split(',').map((item) => {
    const f = item.split(':');
    const tag = f[0];
    if (tag !== 'u' && tag !== 'g' && tag !== 'm' && tag !== 'o') throw new Error(`bad ACL entry "${item}" (tag must be u, g, m or o)`);
    const perm = f[f.length - 1];
    if (!PERM.test(perm)) throw new Error(`bad ACL entry "${item}" (permissions must look like rwx or r-x)`);
    const p = (perm[0] === 'r' ? 4 : 0) | (perm[1] === 'w' ? 2 : 0) | (perm[2] === 'x' ? 1 : 0);
    if (f.length === 3 && f[1] === '') return { tag, named: false, name: '', id: 0, perm: p };
    if (f.length === 4 && (tag === 'u' || tag === 'g') && /^\d+$/.test(f[2]) && Number(f[2]) < UNDEFINED_ID) {
      return { tag, named: true, name: unescName(f[1]), id: Number(f[2]), perm: p };
    }
    throw new Error(`bad ACL entry "${item}" (expected u::rwx, u:name:id:rwx, g::rwx, g:name:id:rwx, m::rwx or o::rwx)`);
  });
}
