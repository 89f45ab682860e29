import { ACL_ACCESS, ACL_DEFAULT, aclText, decodeAcl, encodeAcl, parseAclText, type AclEntry } from './acl.ts';
import { CAPABILITY, capsText, decodeCaps, encodeCaps, parseCapsText, type FileCaps } from './capability.ts';
import { PachaError } from '../errors.ts';

// The extended attributes of one path as one text field of its metadata record: no tab, no
// newline, sorted by name, so that `git log -p` shows a setfacl, a setcap or a setfattr as a
// readable one-line change.
//
//   <name>=<value> <name>=<value> ...
//
// name   the attribute's name; backslash, space, '=', '"' and control characters as \xHH
// value  "text"        UTF-8 printable text (a trailing NUL, as SELinux labels have, is \x00;
//                      backslash and '"' are \\ and \")
//        0s<base64>    any other bytes (getfattr's notation)
//        acl:<entries> system.posix_acl_access/default, users and groups by name and id (acl.ts)
//        cap:<set>     security.capability (capability.ts)

export type XattrValue =
  | { kind: 'bytes'; bytes: Buffer }
  | { kind: 'acl'; entries: AclEntry[] }
  | { kind: 'caps'; caps: FileCaps };

export interface Xattr {
  name: string;
  value: XattrValue;
}

/** An attribute as the kernel gives it. */
export interface RawXattr {
  name: string;
  value: Buffer;
}

/** Names of ids on the host being snapshotted (snapshot/owners.ts). */
export interface IdNames {
  user(uid: number): string;
  group(gid: number): string;
}

/** Ids on the host being restored, by name, falling back to the recorded id (rebuild/owners.ts). */
export interface IdMap {
  uid(user: string, recordedUid: number, hostPathForWarning: string): number;
  gid(group: string, recordedGid: number, hostPathForWarning: string): number;
}

export class XattrFormatError extends PachaError {
  override readonly code = 'EXATTRFORMAT';
  constructor(message: string) {
    super(message);
    this.name = 'XattrFormatError';
  }
}

export function isAclName(name: string): boolean {
  return name === ACL_ACCESS || name === ACL_DEFAULT;
}

/** Structure a raw attribute (ACLs and capabilities decoded when this code can write them back exactly). */
export function fromRaw(raw: RawXattr, names: IdNames): Xattr {
  if (isAclName(raw.name)) {
    const entries = decodeAcl(raw.value, names);
    if (entries) return { name: raw.name, value: { kind: 'acl', entries } };
  } else if (raw.name === CAPABILITY) {
    const caps = decodeCaps(raw.value);
    if (caps) return { name: raw.name, value: { kind: 'caps', caps } };
  }
  return { name: raw.name, value: { kind: 'bytes', bytes: raw.value } };
}

/**
 * The bytes to write on the target host. ACL ids are mapped by name when `ids` is given (the
 * restore); without it they are the recorded ones.
 */
export function toBytes(x: Xattr, ids?: IdMap, hostPathForWarning = ''): Buffer {
  const v = x.value;
  if (v.kind === 'bytes') return v.bytes;
  if (v.kind === 'caps') return encodeCaps(v.caps);
  const entries = ids
    ? v.entries.map((e) =>
        e.named ? { ...e, id: e.tag === 'u' ? ids.uid(e.name, e.id, hostPathForWarning) : ids.gid(e.name, e.id, hostPathForWarning) } : e,
      )
    : v.entries;
  return encodeAcl(entries);
}

function hex2(c: number): string {
  return '\\x' + c.toString(16).padStart(2, '0');
}

function escapeName(name: string): string {
  return name.replace(/[\\ ="\x00-\x1f\x7f]/g, (c) => hex2(c.charCodeAt(0)));
}

function unescapeName(s: string): string {
  return s.replace(/\\x([0-9a-fA-F]{2})|\\/g, (m, h: string | undefined) => {
    if (h === undefined) throw new XattrFormatError(`bad escape in attribute name "${s}" (only \\xHH is accepted)`);
    return String.fromCharCode(parseInt(h, 16));
  });
}

// Printable: no C0/C1 control characters or DEL, valid UTF-8; a single trailing NUL allowed.
function textOf(b: Buffer): string | null {
  const body = b.length > 0 && b[b.length - 1] === 0 ? b.subarray(0, b.length - 1) : b;
  const s = body.toString('utf8');
  if (/[\x00-\x1f\x7f-\x9f\ufffd]/.test(s)) return null;
  if (!Buffer.from(s, 'utf8').equals(body)) return null;
  return '"' + s.replace(/[\\"]/g, (c) => '\\' + c) + (body.length < b.length ? '\\x00' : '') + '"';
}

export function formatValue(x: Xattr): string {
  const v = x.value;
  if (v.kind === 'acl') return `acl:${aclText(v.entries)}`;
  if (v.kind === 'caps') return `cap:${capsText(v.caps)}`;
  return textOf(v.bytes) ?? '0s' + v.bytes.toString('base64');
}

/** The metadata field: '' when the path has none. */
export function formatXattrs(list: readonly Xattr[]): string {
  if (list.length === 0) return '';
  return [...list]
    .sort((a, b) => Buffer.compare(Buffer.from(a.name), Buffer.from(b.name)))
    .map((x) => `${escapeName(x.name)}=${formatValue(x)}`)
    .join(' ');
}

function parseValue(name: string, v: string): XattrValue {
  try {
    if (v.startsWith('"')) {
      let out = '';
      let nul = false;
      for (let i = 1; i < v.length - 1; i++) {
        const c = v[i];
        if (nul) throw new Error('text after \\x00');
        if (c !== '\\') {
          out += c;
          continue;
        }
        const n = v[++i];
        if (n === '\\' || n === '"') out += n;
        else if (n === 'x' && v.slice(i + 1, i + 3) === '00') {
          nul = true;
          i += 2;
        } else throw new Error(`bad escape \\${n ?? ''}`);
      }
      const bytes = Buffer.from(out, 'utf8');
      return { kind: 'bytes', bytes: nul ? Buffer.concat([bytes, Buffer.of(0)]) : bytes };
    }
    if (v.startsWith('0s')) {
      const b64 = v.slice(2);
      if (!/^[A-Za-z0-9+/]*={0,2}$/.test(b64) || b64.length % 4 !== 0) throw new Error('bad base64');
      return { kind: 'bytes', bytes: Buffer.from(b64, 'base64') };
    }
    if (v.startsWith('acl:') && isAclName(name)) return { kind: 'acl', entries: parseAclText(v.slice(4)) };
    if (v.startsWith('cap:') && name === CAPABILITY) return { kind: 'caps', caps: parseCapsText(v.slice(4)) };
    throw new Error('expected "text", 0s<base64>, acl:... (ACLs) or cap:... (security.capability)');
  } catch (e) {
    throw new XattrFormatError(`bad value of extended attribute ${name}: ${(e as Error).message}`);
  }
}

/** Parse formatXattrs(); throws XattrFormatError naming what is wrong. */
export function parseXattrs(field: string): Xattr[] {
  const out: Xattr[] = [];
  let i = 0;
  while (i < field.length) {
    const eq = field.indexOf('=', i);
    if (eq <= i) throw new XattrFormatError(`bad extended attributes "${field}" (expected name=value separated by spaces)`);
    const name = unescapeName(field.slice(i, eq));
    let end: number;
    if (field[eq + 1] === '"') {
      end = eq + 2;
      while (end < field.length && field[end] !== '"') end += field[end] === '\\' ? 2 : 1;
      if (end >= field.length) throw new XattrFormatError(`unterminated text value of extended attribute ${name}`);
      end += 1;
    } else {
      end = field.indexOf(' ', eq);
      if (end < 0) end = field.length;
    }
    out.push({ name, value: parseValue(name, field.slice(eq + 1, end)) });
    if (end < field.length && field[end] !== ' ') throw new XattrFormatError(`expected a space after the value of extended attribute ${name}`);
    i = end + 1;
    if (end + 1 === field.length) throw new XattrFormatError('trailing space after the extended attributes');
  }
  return out;
}

/**
 * What changed between two attribute lists, for `pacha diff` and the rebuild's plan:
 * `+name` added, `-name` removed, `~name` changed. '' when equal.
 */
export function xattrChanges(before: readonly Xattr[] | undefined, after: readonly Xattr[] | undefined): string {
  const a = new Map((before ?? []).map((x) => [x.name, formatValue(x)]));
  const b = new Map((after ?? []).map((x) => [x.name, formatValue(x)]));
  const names = [...new Set([...a.keys(), ...b.keys()])].sort();
  const out: string[] = [];
  for (const n of names) {
    const va = a.get(n);
    const vb = b.get(n);
    if (va === vb) continue;
    out.push(`${va === undefined ? '+' : vb === undefined ? '-' : '~'}${escapeName(n)}`);
  }
  return out.join(' ');
}

/** xattrChanges() of two metadata fields; a field that does not parse is named as a whole. */
export function xattrFieldChanges(before: string | undefined, after: string | undefined): string {
  try {
    return xattrChanges(parseXattrs(before ?? ''), parseXattrs(after ?? ''));
  } catch {
    return 'changed';
  }
}
