import fs from 'node:fs';
import { hostPath } from '../paths.ts';
import { CAPABILITY } from './capability.ts';
import { formatValue, fromRaw, parseXattrs, toBytes, type IdMap, type IdNames, type RawXattr, type Xattr } from './encode.ts';
import { nativeXattr, type XattrCalls } from './native.ts';
import { PachaError } from '../errors.ts';

// Reading and writing the extended attributes of real files. Paths are read without following
// symlinks (l* calls); the restore writes through the descriptor it holds (f* calls), and through
// the path only for a symlink, which cannot be opened (l* calls on a path under a verified
// directory descriptor, /proc/self/fd/N/name).
//
// What is captured: every attribute the kernel lists. That is trusted.* only for root (the kernel
// hides them from others). What is restored: everything recorded, except security.selinux where
// the target has no SELinux (see SelinuxMode), and trusted.* when not root (reported).

export const SELINUX = 'security.selinux';

/** XATTR_LIST_MAX and XATTR_SIZE_MAX on Linux: one buffer of this size always suffices. */
const MAX = 65536;
const NONE: readonly RawXattr[] = Object.freeze([]);

/** A few of many paths, for a warning that covers them all. */
function someOf(l: readonly string[]): string {
  return l.slice(0, 3).join(', ') + (l.length > 3 ? ` and ${l.length - 3} more` : '');
}

/** What the snapshot could not record: one warning each, however many paths it concerned. */
export class XattrWarnings {
  private unsupported: string[] = [];
  private failed = new Map<string, string[]>();
  private unavailable: string | undefined;

  noteUnavailable(reason: string): void {
    this.unavailable = reason;
  }
  noteUnsupported(path: string): void {
    this.unsupported.push(path);
  }
  noteFailure(path: string, code: string): void {
    const l = this.failed.get(code) ?? [];
    l.push(path);
    this.failed.set(code, l);
  }

  messages(): string[] {
    const out: string[] = [];
    if (this.unavailable !== undefined) out.push(`extended attributes (ACLs, capabilities, SELinux labels) are not recorded: ${this.unavailable}`);
    if (this.unsupported.length > 0) {
      out.push(`extended attributes are not supported by the file system of ${someOf(this.unsupported)}: none recorded there`);
    }
    for (const [code, l] of this.failed) out.push(`cannot read the extended attributes of ${someOf(l)} (${code}): recorded without them`);
    return out;
  }
}

let unavailableTold = false;

/** Reader of raw attributes for a snapshot: never throws, counts its problems in `warnings`. */
export class XattrReader {
  readonly warnings = new XattrWarnings();
  private readonly calls: XattrCalls | undefined;
  private readonly buffers: Buffers = { list: Buffer.allocUnsafe(MAX), value: Buffer.allocUnsafe(MAX) };

  constructor() {
    const n = nativeXattr();
    if (n.ok) this.calls = n.calls;
    else if (!unavailableTold) {
      // Once per process: a daemon says it at its first snapshot, not at every one.
      unavailableTold = true;
      this.warnings.noteUnavailable(n.reason);
    }
  }

  get available(): boolean {
    return this.calls !== undefined;
  }

  /** The attributes of `path` itself (a symlink's own), sorted by name; [] when it has none. `shown` names it in warnings. */
  read(path: string, shown = path): readonly RawXattr[] {
    const c = this.calls;
    if (!c) return NONE;
    const r = collect(c, ops(c, { linkPath: path }), this.buffers, (raw) =>
      this.warnings.noteFailure(shown, `attribute name "${raw.toString('latin1')}" is not UTF-8`),
    );
    return typeof r === 'string' ? this.fail(shown, r) : r;
  }

  private fail(path: string, code: string): readonly RawXattr[] {
    if (code === 'ENOTSUP') this.warnings.noteUnsupported(path);
    else if (code !== 'ENOENT') this.warnings.noteFailure(path, code); // ENOENT: gone, the scan reports it
    return NONE;
  }
}

/** Read and structure in one step (ACL ids named from the snapshotted host's databases). */
export function readXattrs(reader: XattrReader, path: string, names: IdNames, shown = path): Xattr[] {
  const raw = reader.read(path, shown);
  return raw.length === 0 ? [] : raw.map((r) => fromRaw(r, names));
}

// ---- restore ------------------------------------------------------------------------------

/**
 * --selinux: `auto` restores security.selinux only where the target has SELinux enabled
 * (/sys/fs/selinux/enforce exists under the root dir), `force` always, `skip` never.
 */
export type SelinuxMode = 'auto' | 'force' | 'skip';
export const SELINUX_MODES: readonly SelinuxMode[] = ['auto', 'force', 'skip'];

export function selinuxEnabled(mode: SelinuxMode, root: string): boolean {
  if (mode === 'force') return true;
  if (mode === 'skip') return false;
  return fs.existsSync(hostPath('/sys/fs/selinux/enforce', root));
}

export interface XattrPolicy {
  /** Write security.selinux (and remove a label the snapshot lacks). */
  selinux: boolean;
  /** Running as root: trusted.* can be seen and written. */
  root: boolean;
}

export function defaultPolicy(mode: SelinuxMode, root: string): XattrPolicy {
  return { selinux: selinuxEnabled(mode, root), root: process.getuid?.() === 0 };
}

/** Which attribute names the restore manages (sets, removes, compares) under the policy. */
export function managed(name: string, policy: XattrPolicy): boolean {
  if (name === SELINUX) return policy.selinux;
  if (name.startsWith('trusted.')) return policy.root;
  return true;
}

/** Where to apply: a descriptor of a file or directory, or the path of a symlink (not followed). */
export type XattrTarget = { fd: number } | { linkPath: string };

export interface XattrDifference {
  name: string;
  kind: 'added' | 'removed' | 'changed';
  /** Text of the live value (removed, changed). */
  from?: string;
  /** Text of the snapshot's value (added, changed). */
  to?: string;
}

/** Problems of a restore, one message per kind however many paths (a host has thousands of labels). */
export class XattrRestoreLog {
  private skipped = new Map<string, string[]>();
  private problems: string[] = [];

  noteSkipped(file: string, name: string): void {
    const key = name === SELINUX ? SELINUX : name.startsWith('trusted.') ? 'trusted.*' : name;
    const l = this.skipped.get(key) ?? [];
    l.push(file);
    this.skipped.set(key, l);
  }
  noteProblem(msg: string): void {
    this.problems.push(msg);
  }

  messages(): string[] {
    const out: string[] = [];
    for (const [key, l] of this.skipped) {
      out.push(
        key === SELINUX
          ? `${SELINUX} not restored on ${someOf(l)}: the target has no SELinux enabled (--selinux=force writes the labels anyway)`
          : `${key} attributes not restored on ${someOf(l)}: they need root`,
      );
    }
    return [...out, ...this.problems];
  }
}

export class XattrUnavailableError extends PachaError {
  override readonly code = 'EXATTRUNAVAILABLE';
  constructor(reason: string) {
    super(`extended attributes cannot be restored: ${reason}`);
    this.name = 'XattrUnavailableError';
  }
}

function callsOrThrow(): XattrCalls {
  const n = nativeXattr();
  if (!n.ok) throw new XattrUnavailableError(n.reason);
  return n.calls;
}

interface Buffers {
  list: Buffer;
  value: Buffer;
}

/**
 * Every attribute through `o`, sorted by name, or the errno code of a failure (an attribute
 * removed between the list and the read is skipped). A name that is not UTF-8 cannot be named in
 * the text metadata: it goes to `badName` and is skipped.
 */
function collect(c: XattrCalls, o: Ops, b: Buffers, badName: (raw: Buffer) => void): readonly RawXattr[] | string {
  const len = o.list(b.list, MAX);
  if (len === 0) return NONE;
  if (len < 0) return c.errorCode();
  const out: RawXattr[] = [];
  let start = 0;
  for (let i = 0; i < len; i++) {
    if (b.list[i] !== 0) continue;
    const raw = b.list.subarray(start, i);
    start = i + 1;
    const name = raw.toString('utf8');
    if (!Buffer.from(name, 'utf8').equals(raw)) {
      badName(raw);
      continue;
    }
    const n = o.get(name, b.value, MAX);
    if (n < 0) {
      const code = c.errorCode();
      if (code === 'ENODATA') continue;
      return code;
    }
    out.push({ name, value: Buffer.from(b.value.subarray(0, n)) });
  }
  return out.sort((x, y) => (x.name < y.name ? -1 : x.name > y.name ? 1 : 0));
}

type Ops = ReturnType<typeof ops>;

function ops(c: XattrCalls, t: XattrTarget) {
  if ('fd' in t) {
    const fd = t.fd;
    return {
      list: (b: Buffer | null, n: number) => c.flistxattr(fd, b, n),
      get: (name: string, b: Buffer | null, n: number) => c.fgetxattr(fd, name, b, n),
      set: (name: string, v: Buffer) => c.fsetxattr(fd, name, v, v.length, 0),
      remove: (name: string) => c.fremovexattr(fd, name),
    };
  }
  const p = t.linkPath;
  return {
    list: (b: Buffer | null, n: number) => c.llistxattr(p, b, n),
    get: (name: string, b: Buffer | null, n: number) => c.lgetxattr(p, name, b, n),
    set: (name: string, v: Buffer) => c.lsetxattr(p, name, v, v.length, 0),
    remove: (name: string) => c.lremovexattr(p, name),
  };
}

// One pair of buffers for every readTarget() (synchronous, so never in use twice at once).
let buffers: Buffers | undefined;
function targetBuffers(): Buffers {
  return (buffers ??= { list: Buffer.allocUnsafe(MAX), value: Buffer.allocUnsafe(MAX) });
}

/** The live attributes of a target (throws with the errno code on a failure other than ENOTSUP). */
export function readTarget(t: XattrTarget): RawXattr[] {
  const c = callsOrThrow();
  const r = collect(c, ops(c, t), targetBuffers(), () => undefined);
  if (typeof r !== 'string') return [...r];
  if (r === 'ENOTSUP') return [];
  throw Object.assign(new Error(`cannot read extended attributes (${r})`), { code: r });
}

/**
 * The differences between a target's live attributes and the snapshot's, as the restore would
 * resolve them (ACL ids mapped by name on this host): for --dry-run and --verify.
 */
export function compareXattrs(live: readonly RawXattr[], want: readonly Xattr[], ids: IdMap, policy: XattrPolicy, file: string, liveNames: IdNames): XattrDifference[] {
  const out: XattrDifference[] = [];
  const have = new Map(live.filter((r) => managed(r.name, policy)).map((r) => [r.name, r.value]));
  for (const w of want) {
    if (!managed(w.name, policy)) continue;
    const cur = have.get(w.name);
    have.delete(w.name);
    const bytes = toBytes(w, ids, file);
    if (cur === undefined) out.push({ name: w.name, kind: 'added', to: formatValue(w) });
    else if (!cur.equals(bytes)) out.push({ name: w.name, kind: 'changed', from: formatValue(fromRaw({ name: w.name, value: cur }, liveNames)), to: formatValue(w) });
  }
  for (const [name, value] of have) out.push({ name, kind: 'removed', from: formatValue(fromRaw({ name, value }, liveNames)) });
  return out.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

/**
 * Make the target's attributes those of the snapshot: set what differs, remove what the snapshot
 * lacks (a replaced file, or one that inherited a default ACL), leave equal ones alone. Call it
 * after the owner is set (a chown clears security.capability, which is written last) and before
 * the times and the mode.
 */
export function applyXattrs(t: XattrTarget, want: readonly Xattr[], ids: IdMap, policy: XattrPolicy, file: string, log: XattrRestoreLog): string[] {
  const c = callsOrThrow();
  const o = ops(c, t);
  const changed: string[] = [];
  let live: RawXattr[];
  try {
    live = readTarget(t);
  } catch (e) {
    log.noteProblem(`${file}: ${(e as Error).message}`);
    return changed;
  }
  const have = new Map(live.map((r) => [r.name, r.value]));
  const wanted = new Set(want.map((w) => w.name));
  for (const [name] of have) {
    if (wanted.has(name) || !managed(name, policy)) continue;
    if (o.remove(name) < 0) {
      const code = c.errorCode();
      if (code !== 'ENODATA') log.noteProblem(`${file}: cannot remove extended attribute ${name} (${code})`);
    } else changed.push(name);
  }
  // security.capability last: nothing after it may clear it.
  const order = [...want].sort((a, b) => Number(a.name === CAPABILITY) - Number(b.name === CAPABILITY));
  for (const w of order) {
    if (!managed(w.name, policy)) {
      log.noteSkipped(file, w.name);
      continue;
    }
    const bytes = toBytes(w, ids, file);
    const cur = have.get(w.name);
    if (cur !== undefined && cur.equals(bytes)) continue;
    if (o.set(w.name, bytes) < 0) log.noteProblem(`${file}: cannot set extended attribute ${w.name} (${c.errorCode()})`);
    else changed.push(w.name);
  }
  return changed;
}

/**
 * The restore's view of extended attributes for one rebuild: applies a snapshot record's xattrs
 * field to each path (after its owner, before its times and mode), and reports, once each, what
 * it could not do. A format 1 snapshot recorded no attributes: paths are then left as they are.
 */
export class XattrRestorer {
  readonly log = new XattrRestoreLog();
  private readonly unavailable: string | undefined;
  private readonly missed: string[] = [];

  private readonly ids: IdMap;
  readonly policy: XattrPolicy;
  /** The snapshot has an xattrs field (format 2 and later): an empty one means none. */
  private readonly recorded: boolean;

  constructor(ids: IdMap, policy: XattrPolicy, recorded: boolean) {
    this.ids = ids;
    this.policy = policy;
    this.recorded = recorded;
    const n = nativeXattr();
    this.unavailable = n.ok ? undefined : n.reason;
  }

  /** Whether apply() reads and writes attributes at all (not for a format 1 snapshot, nor without the native module). */
  get active(): boolean {
    return this.recorded && this.unavailable === undefined;
  }

  /** The metadata step: make the target's attributes the record's. Never throws. */
  apply(t: XattrTarget, field: string | undefined, hostPath: string): void {
    if (!this.recorded) return;
    if (this.unavailable !== undefined) {
      if (field) this.missed.push(hostPath);
      return;
    }
    let want: Xattr[];
    try {
      want = parseXattrs(field ?? '');
    } catch (e) {
      this.log.noteProblem(`${hostPath}: ${(e as Error).message}`);
      return;
    }
    applyXattrs(t, want, this.ids, this.policy, hostPath, this.log);
  }

  /**
   * How a live path's attributes differ from the record (for the plan, --dry-run and --verify):
   * "+name -name ~name", '' when they agree or cannot be compared.
   */
  differences(local: string, field: string | undefined, hostPath: string, liveNames: IdNames): string {
    if (!this.recorded || this.unavailable !== undefined) return '';
    let live: RawXattr[];
    let want: Xattr[];
    try {
      live = readTarget({ linkPath: local });
      want = parseXattrs(field ?? '');
    } catch {
      return '';
    }
    return compareXattrs(live, want, this.ids, this.policy, hostPath, liveNames)
      .map((d) => (d.kind === 'added' ? '+' : d.kind === 'removed' ? '-' : '~') + d.name)
      .join(' ');
  }

  /** One message per kind of problem (for the rebuild's summary). */
  messages(): string[] {
    const out = this.log.messages();
    if (this.missed.length > 0) out.unshift(`extended attributes not restored on ${someOf(this.missed)}: ${this.unavailable}`);
    return out;
  }
}
