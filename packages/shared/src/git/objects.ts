import crypto from 'node:crypto';

// Git's object encoding: "<type> <size>\0<body>", named by the SHA-1 of that. The one ObjectType.

export type ObjectType = 'commit' | 'tree' | 'blob' | 'tag';

export interface GitObject {
  type: ObjectType;
  content: Buffer;
}

const TYPES: ReadonlySet<string> = new Set(['commit', 'tree', 'blob', 'tag']);

export function isObjectType(s: string): s is ObjectType {
  return TYPES.has(s);
}

export function objectHeader(type: ObjectType, size: number): Buffer {
  return Buffer.from(`${type} ${size}\0`);
}

/**
 * Objects up to this size are hashed in one call (crypto.hash): a Hash object per object costs
 * more than the hashing. Above it, copying the object behind its header costs more.
 */
const ONE_SHOT = 16 * 1024;

/** Where a small object is put behind its header to be hashed: no allocation per object (verifying a pack hashes every one). */
const scratch = Buffer.allocUnsafe(ONE_SHOT + 32);

export function hashObject(type: ObjectType, data: Uint8Array): string {
  return hashWith(type, data, 'hex');
}

/** hashObject's id as 20 bytes. */
export function hashObjectDigest(type: ObjectType, data: Uint8Array): Buffer {
  return hashWith(type, data, 'buffer');
}

function hashWith<E extends 'hex' | 'buffer'>(type: ObjectType, data: Uint8Array, enc: E): E extends 'hex' ? string : Buffer;
function hashWith(type: ObjectType, data: Uint8Array, enc: 'hex' | 'buffer'): string | Buffer {
  if (data.length <= ONE_SHOT) {
    const n = scratch.write(`${type} ${data.length}\0`, 'latin1');
    scratch.set(data, n);
    return crypto.hash('sha1', scratch.subarray(0, n + data.length), enc);
  }
  const h = crypto.createHash('sha1').update(objectHeader(type, data.length)).update(data);
  return enc === 'hex' ? h.digest('hex') : h.digest();
}

export function isOid(s: string): boolean {
  return /^[0-9a-f]{40}$/.test(s);
}
