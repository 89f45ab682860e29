import fs from 'node:fs';
import path from 'node:path';
import { ObjectCorruptError, PachaError, UsageError, errnoOf, errorMessage } from '@pacha/shared/errors';
import { parseCommit } from '@pacha/shared/git/commit';
import { checkObject } from '@pacha/shared/git/fsck';
import { firstParentChain, resolveAt } from '@pacha/shared/git/history';
import { PackReader } from '@pacha/shared/git/pack-reader';
import { Repository, readRefIn } from '@pacha/shared/git/repository';
import { parseTree } from '@pacha/shared/git/tree';
import { encodeFields, escapeField } from '@pacha/shared/format/entry';
import { gitPath } from '@pacha/shared/format/names';
import { checkHostName, masterHostPaths } from '@pacha/shared/master-tree';
import { readEntry, readPachaDir, type TreeSource } from '@pacha/shared/format/snapshot';

// The master's view of its host tree, read locally (no SFTP): what `pacha-master hosts`, `log`,
// `show` and `verify` print. Everything here only reads.

export interface HostSummary {
  name: string;
  /** Commit refs/heads/main points at, or null before the first push. */
  head: string | null;
  /** Commit time of the last snapshot (ISO), or null. */
  lastSnapshot: string | null;
  commits: number;
  /** Bytes on disk of the host's repository. */
  size: number;
  error?: string;
}

export interface LogEntry {
  commit: string;
  time: string;
  parents: string[];
  message: string;
}

function hostRepo(hostsPath: string, host: string): string {
  const repo = masterHostPaths(hostsPath, checkHostName(host)).repo;
  if (!fs.existsSync(path.join(hostsPath, host))) {
    throw new PachaError(`no host ${host} under ${hostsPath}`, { hint: 'pacha-master hosts lists the hosts this master holds' });
  }
  return repo;
}

function dirSize(dir: string): number {
  let total = 0;
  let entries: fs.Dirent[];
  try {
    entries = fs.readdirSync(dir, { withFileTypes: true });
  } catch {
    return 0;
  }
  for (const e of entries) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) total += dirSize(p);
    else if (e.isFile()) total += fs.statSync(p).size;
  }
  return total;
}

export function listHosts(hostsPath: string): HostSummary[] {
  let names: string[];
  try {
    names = fs.readdirSync(hostsPath, { withFileTypes: true }).filter((d) => d.isDirectory()).map((d) => d.name).sort();
  } catch (e) {
    throw new PachaError(`cannot read the hosts folder ${hostsPath}: ${errorMessage(e)}`, { hint: 'name it with --hosts-path DIR' });
  }
  return names.map((name) => {
    const repo = masterHostPaths(hostsPath, name).repo;
    const summary: HostSummary = { name, head: null, lastSnapshot: null, commits: 0, size: dirSize(repo) };
    const store = new Repository(repo);
    try {
      summary.head = fs.existsSync(path.join(repo, 'HEAD')) ? store.readRef('refs/heads/main') : null;
      if (summary.head) {
        for (const c of firstParentChain(store, summary.head)) {
          summary.lastSnapshot ??= new Date(c.time * 1000).toISOString();
          summary.commits++;
        }
      }
    } catch (e) {
      summary.error = errorMessage(e);
    } finally {
      store.close();
    }
    return summary;
  });
}

export function hostLog(hostsPath: string, host: string, limit?: number): LogEntry[] {
  const store = new Repository(hostRepo(hostsPath, host));
  try {
    const head = store.readRef('refs/heads/main');
    if (!head) return [];
    return [...firstParentChain(store, head, { limit })].map((c) => ({
      commit: c.oid,
      time: new Date(c.time * 1000).toISOString(),
      parents: c.parents,
      message: c.message.trimEnd(),
    }));
  } finally {
    store.close();
  }
}

/** Walk a tree path (already in git names) to its entry. */
function lookupPath(store: Repository, tree: string, gitRel: string): { mode: string; oid: string } | undefined {
  let cur = { mode: '40000', oid: tree };
  for (const part of gitRel.split('/').filter((p) => p.length > 0)) {
    if (cur.mode !== '40000') return undefined;
    const e = store.readTree(cur.oid).find((x) => x.name === part);
    if (!e) return undefined;
    cur = e;
  }
  return cur;
}

export interface ShownFile {
  commit: string;
  time: string;
  /** File content, or the target for a symlink. */
  content: Buffer;
  type: 'file' | 'symlink';
  /** The path's metadata record as one line, path first, when present. */
  metadata?: string;
}

export function showFile(hostsPath: string, host: string, hostAbs: string, at?: string): ShownFile {
  if (!hostAbs.startsWith('/')) throw new UsageError(`${hostAbs}: give the absolute path the file had on the host (e.g. /etc/nginx/nginx.conf)`);
  const store = new Repository(hostRepo(hostsPath, host));
  try {
    const head = store.readRef('refs/heads/main');
    if (!head) throw new PachaError(`${host} has no snapshot yet`);
    const commit = resolveAt(store, head, at);
    const info = store.readCommit(commit);
    const rel = path.posix.normalize(hostAbs).replace(/^\/+/, '');
    const source: TreeSource = { readTree: (oid) => store.readTree(oid), readBlob: (oid) => store.read(oid).content };
    const entry = lookupPath(store, info.tree, gitPath(rel, readPachaDir(source, info.tree).version));
    if (!entry) throw new PachaError(`${hostAbs} is not in ${host}'s snapshot ${commit.slice(0, 12)}`);
    if (entry.mode === '40000') throw new PachaError(`${hostAbs} is a directory in that snapshot: name a file`);
    // A record that does not parse is damage worth seeing: readEntry throws then.
    const record = readEntry(source, info.tree, rel);
    const metadata = record === null ? undefined : `${escapeField(rel)}\t${encodeFields(record)}`;
    return {
      commit,
      time: new Date(info.time * 1000).toISOString(),
      content: store.read(entry.oid).content,
      type: entry.mode === '120000' ? 'symlink' : 'file',
      metadata,
    };
  } finally {
    store.close();
  }
}

export interface VerifyReport {
  host: string;
  ok: boolean;
  head: string | null;
  packs: number;
  objects: number;
  problems: string[];
  /** Things native git fsck also only mentions: not damage. */
  notes: string[];
}

/**
 * Check one host's repository as native `git fsck --full --strict` does, without native git:
 * HEAD and the ref resolve; every pack is checked whole against its index (checksums, ids
 * sorted without duplicates, CRCs, entries tiling the pack, every object hashing to its id and
 * well-formed); every loose object hashes to its id; every object reachable from the ref is
 * present, of the right type and well-formed. Damaged packs are named.
 */
export async function verifyHost(hostsPath: string, host: string): Promise<VerifyReport> {
  const repo = hostRepo(hostsPath, host);
  const report: VerifyReport = { host, ok: false, head: null, packs: 0, objects: 0, problems: [], notes: [] };
  const problem = (m: string) => report.problems.push(m);
  if (!fs.existsSync(repo)) {
    problem(`${repo}: no repository (the host never pushed)`);
    return report;
  }
  try {
    const headText = fs.readFileSync(path.join(repo, 'HEAD'), 'utf8');
    if (headText.trim() !== 'ref: refs/heads/main') problem(`${repo}/HEAD: "${headText.trim()}", expected "ref: refs/heads/main"`);
  } catch (e) {
    problem(`${repo}/HEAD: ${errorMessage(e)}`);
  }
  const packDir = path.join(repo, 'objects', 'pack');
  let names: string[] = [];
  try {
    names = fs.readdirSync(packDir);
  } catch (e) {
    if (errnoOf(e) !== 'ENOENT') problem(`${packDir}: ${errorMessage(e)}`); // else no packs yet
  }
  const check = (_oid: string, type: Parameters<typeof checkObject>[0], content: Buffer) => checkObject(type, content);
  for (const n of names.filter((x) => x.endsWith('.pack')).sort()) {
    const idx = n.slice(0, -5) + '.idx';
    if (!names.includes(idx)) {
      // As for git fsck: unused (a push cut between its two renames, or a pack the master refused
      // the index of), not damage.
      report.notes.push(`${packDir}/${n}: has no .idx (unused)`);
      continue;
    }
    report.packs++;
    let r: PackReader | undefined;
    try {
      r = new PackReader(path.join(packDir, n));
      for (const p of await r.verify({ check })) problem(p);
      const want = n.slice(5, -5);
      if (r.index.packChecksum !== want) problem(`${packDir}/${n}: named ${want} but its checksum is ${r.index.packChecksum}`);
    } catch (e) {
      problem(`${packDir}/${n}: ${errorMessage(e)}`);
    } finally {
      r?.close();
    }
  }
  for (const n of names.filter((x) => x.endsWith('.idx'))) {
    if (!names.includes(n.slice(0, -4) + '.pack')) problem(`${packDir}/${n}: index without its pack`);
  }
  const store = new Repository(repo);
  try {
    checkLoose(store, problem);
    let head: string | null = null;
    try {
      // No ref yet is a host whose first push has not completed: nothing to check, nothing damaged.
      head = readRefIn(repo, 'refs/heads/main');
    } catch (e) {
      problem(errorMessage(e));
    }
    report.head = head;
    if (head !== null) checkReachable(store, head, report, problem);
  } finally {
    store.close();
  }
  report.ok = report.problems.length === 0;
  return report;
}

/** Every loose object hashes to the id its path names and is well-formed. */
function checkLoose(store: Repository, problem: (m: string) => void): void {
  const objects = path.join(store.gitdir, 'objects');
  let dirs: string[] = [];
  try {
    dirs = fs.readdirSync(objects).filter((d) => /^[0-9a-f]{2}$/.test(d));
  } catch {
    return;
  }
  for (const d of dirs) {
    for (const f of fs.readdirSync(path.join(objects, d))) {
      const oid = d + f;
      if (!/^[0-9a-f]{40}$/.test(oid)) {
        problem(`${objects}/${d}/${f}: not an object file name`);
        continue;
      }
      try {
        const o = store.read(oid);
        const bad = checkObject(o.type, o.content);
        if (bad) problem(`object ${oid}: ${bad}`);
      } catch (e) {
        problem(`object ${oid}: ${errorMessage(e)}`);
      }
    }
  }
}

function checkReachable(store: Repository, head: string, report: VerifyReport, problem: (m: string) => void): void {
  const seen = new Set<string>();
  // [oid, expected type, what refers to it]
  const stack: [string, string, string][] = [[head, 'commit', 'refs/heads/main']];
  while (stack.length > 0) {
    const [oid, want, from] = stack.pop()!;
    if (seen.has(oid)) continue;
    seen.add(oid);
    let obj;
    try {
      obj = store.tryRead(oid);
    } catch (e) {
      if (e instanceof ObjectCorruptError && e.idMismatch) problem(`object ${oid} (${want} of ${from}) does not hash to its id: corrupt`);
      else problem(`object ${oid} (${want} of ${from}) cannot be read: ${errorMessage(e)}`);
      continue;
    }
    if (!obj) {
      problem(`object ${oid} (${want} of ${from}) is missing`);
      continue;
    }
    report.objects++;
    // tryRead has checked the content against its id.
    if (obj.type !== want) problem(`object ${oid} (of ${from}) is a ${obj.type}, expected a ${want}`);
    const bad = checkObject(obj.type, obj.content);
    if (bad) {
      problem(`object ${oid} (${want} of ${from}): ${bad}`);
      continue;
    }
    try {
      if (obj.type === 'commit') {
        const c = parseCommit(obj.content);
        stack.push([c.tree, 'tree', `commit ${oid.slice(0, 12)}:`]);
        for (const p of c.parents) stack.push([p, 'commit', `commit ${oid.slice(0, 12)}`]);
      } else if (obj.type === 'tree') {
        for (const e of parseTree(obj.content)) {
          if (e.mode === '160000') continue;
          stack.push([e.oid, e.mode === '40000' ? 'tree' : 'blob', `${from}${from.endsWith(':') ? '' : '/'}${e.name}`]);
        }
      }
    } catch (e) {
      problem(`object ${oid} (${want} of ${from}) does not parse: ${errorMessage(e)}`);
    }
  }
  // Packs the reader found damaged while reading (their good copies were used where they exist).
  for (const [file, why] of store.badPacks) problem(`${file}: damaged: ${why}`);
}
